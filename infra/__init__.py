"""AWS CDK infrastructure of sav-router (stacks composed in `app.py`, values from `cdk.json`)."""
