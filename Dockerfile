# Custom Beam SDK harness image: Beam's own Python 3.11 SDK container (same Beam
# version as constraints.txt) with featurebridge and its pinned dependencies installed.
# Flink/Spark/Dataflow workers start it, so nothing is downloaded at worker start and
# --setup_file is not needed. runner_configs/flink.yaml, spark.yaml and dataflow.yaml
# point at it.
#
#   docker build -t registry.example.com/featurebridge-beam-sdk:0.1.0-beam2.77.0-py3.11 .
#   docker push registry.example.com/featurebridge-beam-sdk:0.1.0-beam2.77.0-py3.11
#
# Keep BEAM_VERSION equal to the apache-beam pin in constraints.txt (tests/test_runners.py
# checks it). As a worker-pool sidecar: docker run -p 50000:50000 IMAGE --worker_pool
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}
# Re-declared: an ARG before FROM is not visible in the build stage.
ARG BEAM_VERSION

WORKDIR /opt/featurebridge
# Dependencies first (their layer is cached while only our code changes).
COPY constraints.txt setup.py ./
COPY transforms/ transforms/
COPY pipelines/ pipelines/
COPY expansion_service/ expansion_service/
COPY runner_configs/ runner_configs/
# A regular (not editable) install, pinned by constraints.txt; then fail the build if
# the pins are inconsistent or the packages do not import.
RUN pip install --no-cache-dir -c constraints.txt . \
    && pip check \
    && cd / && python -c "import apache_beam, tensorflow_transform, featurebridge.transforms, featurebridge.pipelines, featurebridge.expansion_service; assert apache_beam.__version__ == '${BEAM_VERSION}'" \
    && rm -rf /opt/featurebridge/build

ENV TF_CPP_MIN_LOG_LEVEL=2
# The base image's entrypoint (/opt/apache/beam/boot) stays: it is the SDK harness
# contract that Flink, Spark and Dataflow call, and `--worker_pool` starts a worker pool.
