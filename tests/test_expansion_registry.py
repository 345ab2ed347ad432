"""The allowlist's directory confinement (allowed roots), one expansion per
output_dir, and the service's start checks, without a server."""

import os

import pytest

from featurebridge.expansion_service import registry
from featurebridge.transforms.errors import OutputExistsError, UsageError

ANALYZE = registry.by_identifier("beam:schematransform:org.featurebridge:analyze_and_transform:v1")
OUTSIDE = r"field 'output_dir' is outside the directories this service allows"
SPEC = "columns:\n  - {name: x, type: float, transforms: [zscore]}\n"


def _refusal(config, roots):
    with pytest.raises(registry.RegistryError) as info:
        registry.check_directories(ANALYZE.identifier, config, roots)
    return str(info.value)


def _without_excerpt(message):
    """The message less its "(got ...)" excerpt of the caller's value."""
    return message[: message.rindex("(got ")]


def test_paths_strictly_inside_the_roots_pass_and_others_name_the_field(tmp_path):
    root = tmp_path / "allowed"
    (root / "data").mkdir(parents=True)
    registry.check_directories(ANALYZE.identifier, {"spec": "x", "output_dir": str(root / "data" / "out")}, [str(root)])
    registry.check_directories(ANALYZE.identifier, {"output_dir": str(root / "new" / "deeper" / "out")}, [str(root)])
    for outside in [str(tmp_path / "allowedx"), str(root / ".." / "elsewhere"), "/etc", str(root)]:
        with pytest.raises(registry.RegistryError, match=OUTSIDE):
            registry.check_directories(ANALYZE.identifier, {"output_dir": outside}, [str(root)])


def test_the_answer_outside_the_roots_does_not_depend_on_existence(tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()
    os.symlink("/etc", root / "link")
    os.symlink("/nonexistent", root / "dangling")
    roots = [str(root)]
    messages = {
        value: _refusal({"output_dir": value}, roots)
        for value in ["/etc", "/nonexistent/x", "/etc/passwd", str(root / "link"), str(root / "link" / "x"),
                      str(root / "dangling"), str(root / "dangling" / "x")]
    }
    for value, message in messages.items():
        assert OUTSIDE in message and str(root) in message, message
        assert f"(got {value!r})" in message  # the caller's own value, never what it resolves to
        assert "passwd" not in message or "passwd" in value
    assert len({_without_excerpt(m) for m in messages.values()}) == 1


def test_a_root_itself_relative_paths_and_dotdot_are_refused(tmp_path):
    root = tmp_path / "allowed"
    (root / "sub").mkdir(parents=True)
    roots = [str(root)]
    refused = [str(root), str(root) + "/", str(root / "sub" / ".." / "x"), str(root / ".." / "allowed" / "x"),
               "relative/out", "out", "", "./out", f"file://{root}/x", str(root / "x\0y"), "~/out"]
    messages = {_without_excerpt(_refusal({"output_dir": v}, roots)) for v in refused}
    assert len(messages) == 1 and OUTSIDE in messages.pop()
    with pytest.raises(registry.RegistryError, match=r"field 'output_dir' is outside"):
        registry.check_directories(ANALYZE.identifier, {"output_dir": 7}, roots)


def test_symlinks_cannot_escape_the_roots(tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()
    os.symlink("/etc", root / "link")
    with pytest.raises(registry.RegistryError, match=r"'analyzed_dir' is outside"):
        registry.check_directories("id", {"analyzed_dir": str(root / "link")}, [str(root)])
    # A link inside the root to a place inside the root is fine.
    (root / "real").mkdir()
    os.symlink(root / "real", root / "alias")
    registry.check_directories("id", {"analyzed_dir": str(root / "alias"), "output_dir": str(root / "alias" / "o")}, [str(root)])


def test_a_parent_outside_the_roots_is_refused_even_when_the_path_resolves_inside(tmp_path):
    # root/escape -> outside, outside/back -> root/target: the path resolves inside,
    # but its staging directory (a sibling) would be outside.
    root, outside = tmp_path / "allowed", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "escape")
    os.symlink(root / "target", outside / "back")
    with pytest.raises(registry.RegistryError, match=OUTSIDE):
        registry.check_directories(ANALYZE.identifier, {"output_dir": str(root / "escape" / "back")}, [str(root)])


def test_a_huge_hostile_value_is_not_echoed(tmp_path):
    for value in ["/" + "a/" * (25 << 20), "\x1b[31m" * 1000 + "\u202e/etc", "x" * (50 << 20)]:
        message = _refusal({"output_dir": value}, [str(tmp_path)])
        assert OUTSIDE in message and len(message) < 1024, len(message)
        assert "\x1b" not in message and "\u202e" not in message  # escaped, ASCII only
        assert message.isascii()


def test_build_checks_roots_before_constructing_the_stage(tmp_path):
    with pytest.raises(registry.RegistryError, match=r"'output_dir' is outside"):
        ANALYZE.build({"spec": "not even parsed", "output_dir": "/etc/out"}, allowed_roots=[str(tmp_path)])
    # Outside the roots an existing and a missing path get the same answer:
    # the stage's "already exists" check comes only after the roots check.
    answers = set()
    for value in ["/etc", "/nonexistent/x"]:
        with pytest.raises(registry.RegistryError) as info:
            ANALYZE.build({"spec": SPEC, "output_dir": value}, [str(tmp_path)])
        answers.add(_without_excerpt(str(info.value)))
    assert len(answers) == 1
    # Inside the roots the stage says so.
    (tmp_path / "exists").mkdir()
    with pytest.raises(OutputExistsError, match=r"already exists"):
        ANALYZE.build({"spec": SPEC, "output_dir": str(tmp_path / "exists")}, [str(tmp_path)])


def test_build_without_roots_is_a_server_bug(tmp_path):
    with pytest.raises(RuntimeError, match=r"server bug"):
        ANALYZE.build({"spec": SPEC, "output_dir": str(tmp_path / "o")}, ())
    with pytest.raises(RuntimeError, match=r"server bug"):
        registry.check_directories(ANALYZE.identifier, {"output_dir": str(tmp_path / "o")}, [])
    with pytest.raises(TypeError):
        ANALYZE.build({"spec": SPEC, "output_dir": str(tmp_path / "o")})  # roots are required


def test_validate_roots_refuses_missing_roots_and_files_and_resolves_the_rest(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    (tmp_path / "file").write_text("x")
    monkeypatch.chdir(tmp_path)
    real = os.path.realpath(tmp_path / "real")
    assert registry.validate_roots(["real", str(tmp_path / "link")]) == (real,)
    with pytest.raises(UsageError, match=r"Allowed root '.*missing' does not exist\. Create the directory first"):
        registry.validate_roots([str(tmp_path / "real"), str(tmp_path / "missing")])
    with pytest.raises(UsageError, match=r"Allowed root 'file' is not a directory\. Create the directory first"):
        registry.validate_roots(["file"])
    with pytest.raises(UsageError, match=r"at least one allowed root"):
        registry.validate_roots([])


def test_an_output_dir_is_given_to_one_expansion_only(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")
    reserved = set()
    out = str(tmp_path / "real" / "out")
    assert registry.reserve_outputs(ANALYZE.identifier, {"spec": SPEC, "output_dir": out}, reserved) == (
        os.path.realpath(out),
    )
    for again in [out, out + "/", str(tmp_path / "alias" / "out"), str(tmp_path / "real" / "." / "out")]:
        with pytest.raises(registry.RegistryError) as info:
            registry.reserve_outputs(ANALYZE.identifier, {"spec": SPEC, "output_dir": again}, reserved)
        assert "was already given to an earlier expansion of this service; each expansion needs its own new directory" in str(info.value)
    assert reserved == {os.path.realpath(out)}
    other = str(tmp_path / "real" / "other")
    registry.reserve_outputs(ANALYZE.identifier, {"output_dir": other}, reserved)
    # Stages that only read directories reserve nothing.
    assert registry.reserve_outputs("t", {"analyzed_dir": out}, reserved) == ()
    assert registry.reserve_outputs("t", {"analyzed_dir": out}, reserved) == ()
    assert reserved == {os.path.realpath(out), os.path.realpath(other)}


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
