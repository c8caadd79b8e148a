"""The console: a self-hosted web app for reviewers (queues) and data scientists (evaluations, promotion).

    commands.py   `sav-router console` and `sav-router console users add` (cheap parser)
    users.py      the users file: roles and slow salted password hashes (scrypt)
    security.py   signed session cookies, CSRF tokens, security headers (strict CSP)
    audit_log.py  who answered, promoted or rolled back what (no request text)
    desks.py      the review queues as a reviewer sees them (local leases, SQS visibility)
    sources.py    where everything comes from: the local workspace or the AWS queue and bucket
    dashboard.py  evaluation, audit and traffic figures for the pages (pure Python)
    charts.py     server-rendered SVG charts
    app.py        the FastAPI application (Jinja2 templates, static assets served by the app)
"""
