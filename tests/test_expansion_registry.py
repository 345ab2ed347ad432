"""The allowlist's directory confinement (--allowed_root), without a server."""

import os

import pytest

from featurebridge.expansion_service import registry

ANALYZE = registry.by_identifier("beam:schematransform:org.featurebridge:analyze_and_transform:v1")


def test_paths_inside_the_roots_pass_and_others_name_the_field(tmp_path):
    root = tmp_path / "allowed"
    (root / "data").mkdir(parents=True)
    registry.check_directories(ANALYZE.identifier, {"spec": "x", "output_dir": str(root / "data" / "out")}, [str(root)])
    registry.check_directories(ANALYZE.identifier, {"output_dir": str(root)}, [str(root)])
    for outside in [str(tmp_path / "allowedx"), str(root / ".." / "elsewhere"), "/etc"]:
        with pytest.raises(registry.RegistryError, match=r"field 'output_dir' is outside the directories this service allows"):
            registry.check_directories(ANALYZE.identifier, {"output_dir": outside}, [str(root)])


def test_symlinks_cannot_escape_the_roots(tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()
    os.symlink("/etc", root / "link")
    with pytest.raises(registry.RegistryError, match=r"'analyzed_dir' is outside"):
        registry.check_directories("id", {"analyzed_dir": str(root / "link")}, [str(root)])


def test_build_checks_roots_before_constructing_the_stage(tmp_path):
    with pytest.raises(registry.RegistryError, match=r"'output_dir' is outside"):
        ANALYZE.build({"spec": "not even parsed", "output_dir": "/etc/out"}, allowed_roots=[str(tmp_path)])


# ---------------------------------------------------------------- environments and defaults


def _artifact(name):
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    return beam_runner_api_pb2.ArtifactInformation(
        type_urn=common_urns.artifact_types.URL.urn,
        type_payload=beam_runner_api_pb2.ArtifactUrlPayload(url=f"featurebridge-artifact://{name}").SerializeToString(),
        role_urn=common_urns.artifact_roles.STAGING_TO.urn,
        role_payload=beam_runner_api_pb2.ArtifactStagingToRolePayload(staged_name=name).SerializeToString(),
    )


@pytest.mark.parametrize(
    "kind, config, urn, check",
    [
        ("docker", "registry.example/featurebridge-beam-sdk:x", "beam:env:docker:v1",
         lambda p: p.container_image == "registry.example/featurebridge-beam-sdk:x"),
        ("process", '{"command": "/opt/apache/beam/boot"}', "beam:env:process:v1", lambda p: p.command == "/opt/apache/beam/boot"),
        ("external", "localhost:50000", "beam:env:external:v1", lambda p: p.endpoint.url == "localhost:50000"),
    ],
)
def test_each_environment_kind_carries_its_config_and_the_staged_artifacts(kind, config, urn, check):
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners import pipeline_context

    from featurebridge.expansion_service.environments import make_environment

    proto = make_environment(kind, config, [_artifact("featurebridge.tar.gz")]).to_runner_api(
        pipeline_context.PipelineContext()
    )
    assert proto.urn == urn
    payload_type = {
        "docker": beam_runner_api_pb2.DockerPayload,
        "process": beam_runner_api_pb2.ProcessPayload,
        "external": beam_runner_api_pb2.ExternalPayload,
    }[kind]
    assert check(payload_type.FromString(proto.payload))
    assert [d.role_payload for d in proto.dependencies] == [_artifact("featurebridge.tar.gz").role_payload]


def test_docker_defaults_to_beams_image_and_process_or_external_need_a_config():
    import apache_beam as beam
    from apache_beam.portability.api import beam_runner_api_pb2
    from apache_beam.runners import pipeline_context

    from featurebridge.expansion_service.environments import default_docker_image, make_environment

    proto = make_environment("docker", None, []).to_runner_api(pipeline_context.PipelineContext())
    image = beam_runner_api_pb2.DockerPayload.FromString(proto.payload).container_image
    # featurebridge's SDK harness image (the Dockerfile's), tagged with the pinned Beam.
    assert image == default_docker_image() and image.endswith(f"-beam{beam.__version__}-py3.11"), image
    with pytest.raises(ValueError, match=r"--environment process needs --environment_config"):
        make_environment("process", None, [])
    with pytest.raises(ValueError, match=r"--environment external needs --environment_config \(the worker pool's host:port\)"):
        make_environment("external", "", [])
    with pytest.raises(ValueError, match=r"--environment 'kubernetes' is not supported"):
        make_environment("kubernetes", "x", [])


def test_the_service_binds_loopback_unless_told_and_refuses_an_open_port_without_a_token():
    from featurebridge.expansion_service.server import ServerConfig

    assert ServerConfig().host == "127.0.0.1"
    ServerConfig().validate()
    with pytest.raises(ValueError, match=r"--host 0\.0\.0\.0 listens beyond loopback: set a shared token"):
        ServerConfig(host="0.0.0.0").validate()
    ServerConfig(host="0.0.0.0", token="t").validate()
    ServerConfig(host="0.0.0.0", allow_insecure_remote=True).validate()


# ---------------------------------------------------------------- caller errors and bugs


def test_refusals_are_featurebridge_errors_and_only_those_reach_the_caller():
    from featurebridge.expansion_service import gate, servicers
    from featurebridge.expansion_service.gate import RefusedError
    from featurebridge.transforms.errors import FeaturebridgeError, SpecError

    for cls in (RefusedError, registry.RegistryError):
        assert issubclass(cls, FeaturebridgeError) and issubclass(cls, ValueError)
    assert gate.is_caller_error(SpecError("spec: bad")) and gate.is_caller_error(RefusedError("no"))
    # Not by class name or message text: a plain error that looks like a stage's is a bug.
    assert not gate.is_caller_error(ValueError("TransformRows: /srv/secret/path"))
    assert not gate.is_caller_error(KeyError("RegistryError"))
    message = servicers.error_message("abc", ValueError("TransformRows: /srv/secret/path"))
    assert "/srv/secret" not in message and "internal ValueError" in message and "request id abc" in message
    assert servicers.error_message("abc", SpecError("spec: bad")).endswith("(request id abc): spec: bad")
