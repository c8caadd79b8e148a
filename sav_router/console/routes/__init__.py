"""The console's routes, one router per area (app.py includes them all).

    auth.py        GET/POST /login, POST /logout
    queue.py       GET /, GET /queue/{name}, POST /queue/{name}/answer|skip|undo, POST /queue/batch/start (admin)
    recheck.py     POST /queue/recheck/settle, GET /recheck/doubts, POST /recheck/doubts/{key}/settle (admin)
    dashboard.py   GET /dashboard
    models.py      GET /models, /models/{version}; POST /models/{version}/compare|promote, /models/rollback (admin)
    static.py      /static/... (CSS and the keyboard script, served by the app)

What a route needs (a session, the admin role, a CSRF-checked form) is a
dependency in its signature (console/deps.py); pages are rendered by
console/pages.py.
"""
