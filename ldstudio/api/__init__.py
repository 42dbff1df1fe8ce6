"""`ldstudio serve`: the engine service over HTTP (FastAPI + uvicorn); the server's threads.

One more front end of `ldstudio.core.service.EngineService`: handlers submit requests and
follow events, never run a job. By concern:

    app         the FastAPI app factory: auth (HTTP Basic), CORS, error bodies
    context     what the routes share: the service, the library, the model catalogue, options
    catalogue   the server's models (scanned folders + bundled) as names; requests resolve here
    jobs        per-job event logs (replayed to late subscribers) and the progress A1111 reports
    a1111       the /sdapi/v1 routes (AUTOMATIC1111's API, the subset its clients use)
    a1111_models  an A1111 request body → an ldstudio Request; sampler and scheduler names
    native      the /ldstudio/v1 routes (ldstudio's own protocol: jobs, SSE events, blobs)
    server      building the service and running uvicorn
"""
