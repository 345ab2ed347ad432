"""featurebridge's restricted Beam expansion service (``featurebridge expansion-service``).

- `server`: configuration and lifecycle (build, bind, start, drain, stop);
- `gate`: what a caller may ask for, checked before anything is decoded;
- `registry`: the allowlisted stages;
- `artifacts`: what the service stages, and the only artifacts it serves;
- `environments`: the SDK environment of expanded transforms;
- `interceptor`: request ids, the token, the bounds on RPCs in flight;
- `servicers`: the Expansion and artifact retrieval RPCs;
- `process`: the service as a separate process (tests, benchmarks);
- `__main__`: the command line.
"""
