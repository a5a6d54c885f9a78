"""A minimal Django project's settings (no database): enough to serve requests."""

SECRET_KEY = "spotgrace-example-not-secret"  # an example: set yours from the environment
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True
