"""The console: a self-hosted web app for reviewers (queues) and data scientists (evaluations, promotion).

    users.py      the users file: roles and slow salted password hashes (scrypt)
    security.py   signed session cookies, CSRF tokens, security headers (strict CSP)
    audit_log.py  who answered, promoted or rolled back what (no request text)
    desks.py      the review queues as a reviewer sees them (local leases, SQS visibility)
    sources.py    where everything comes from: the local workspace or the AWS queue and bucket
                  (on AWS through sav_router/aws: review_store.py, s3io.py, review/queue.py's SqsReviewQueue)
    dashboard.py  evaluation, audit and traffic figures for the pages (pure Python)
    charts.py     server-rendered SVG charts
    deps.py       request dependencies: the session, the admin role, the CSRF-checked form
    pages.py      the Jinja2 templates, their filters and words (reason codes, notices), page rendering
    routes/       one FastAPI router per area: auth, queue, dashboard, models, static
    app.py        create_app: shared state on app.state, the routers, error pages, security headers

`sav-router console` itself (the command and `console users add|list`) is
sav_router/cli/console.py.
"""
