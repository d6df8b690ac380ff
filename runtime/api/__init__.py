"""The upload API: FastAPI app (``runtime.api.main:app``) that also runs on Lambda (``lambda_handler.handler``)."""
