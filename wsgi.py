"""gunicorn entry point: ``gunicorn -c config/gunicorn.conf.py wsgi:app``."""

from ctxcloud import create_app
from ctxcloud.api import openapi_document

app = create_app()
# The OpenAPI document is written when first read (ctxcloud.api.Api): a server writes it at
# start, so a broken document fails here and no request waits for it.
openapi_document(app)
