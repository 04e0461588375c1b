"""The container files (docker/Dockerfile, docker/compose.yml, docker/k8s-sidecar.yaml,
examples/tvguide/Dockerfile) checked without a Docker engine: against `mongotap --help`, the CMake
files, the binary's shared libraries and the build script; the HEALTHCHECK script, the deployment
environments and the demo image's command are run for real against local processes."""

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest
import yaml

import helpers

ROOT = helpers.ROOT
DOCKERFILE = os.path.join(ROOT, "docker", "Dockerfile")
COMPOSE = os.path.join(ROOT, "docker", "compose.yml")
K8S = os.path.join(ROOT, "docker", "k8s-sidecar.yaml")
HEALTHCHECK = os.path.join(ROOT, "docker", "healthcheck.sh")
README = os.path.join(ROOT, "README.md")
TVGUIDE_DIR = os.path.join(ROOT, "examples", "tvguide")
TVGUIDE_DOCKERFILE = os.path.join(TVGUIDE_DIR, "Dockerfile")

ENV_NAME_RE = re.compile(r"\bMONGOTAP_[A-Z0-9_]+\b")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
# Shared libraries every debian:bookworm-slim has, and the sanitizer runtimes of a test build.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "libtinfo6"}
SANITIZER_PACKAGES = {"libasan8", "libubsan1"}


# ---- readers -------------------------------------------------------------------------------

def parse_dockerfile(path):
    """The stages of a Dockerfile: [{"from", "name", "ins": [(INSTRUCTION, text)]}], with
    continuation lines joined and comment lines dropped (as Docker does)."""
    stages, logical = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.strip().startswith("#") or (not logical and not line.strip()):
                continue
            if line.rstrip().endswith("\\"):
                logical += line.rstrip()[:-1] + " "
                continue
            logical += line
            instr, _, text = logical.strip().partition(" ")
            instr, text, logical = instr.upper(), text.strip(), ""
            if instr == "FROM":
                words = text.split()
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                stages.append({"from": words[0], "name": name, "ins": []})
            else:
                assert stages, "%s: %s before FROM" % (path, instr)
                stages[-1]["ins"].append((instr, text))
    return stages


def instructions(stage, name):
    return [text for instr, text in stage["ins"] if instr == name]


def env_of(stage):
    """ENV KEY=VALUE ... (and the legacy ENV KEY VALUE) of one stage, in order."""
    env = {}
    for text in instructions(stage, "ENV"):
        words = shlex.split(text)
        if "=" not in words[0]:
            env[words[0]] = " ".join(words[1:])
            continue
        for w in words:
            key, _, value = w.partition("=")
            env[key] = value
    return env


def apt_packages(stage):
    """Package names given to `apt-get install` in the stage's RUN instructions."""
    pkgs = []
    for text in instructions(stage, "RUN"):
        for m in re.finditer(r"apt-get\s+install\s+(.*?)(?:&&|;|\|\||$)", text):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


def exec_form(text):
    """A JSON exec-form argument list (ENTRYPOINT, CMD), or None for the shell form."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def healthcheck_cmd(stage):
    found = instructions(stage, "HEALTHCHECK")
    assert len(found) == 1, "expected one HEALTHCHECK, found %r" % found
    words = found[0].split(None, 1)
    while words and words[0].startswith("--"):
        words = words[1].split(None, 1)
    assert words[0].upper() == "CMD", found[0]
    return exec_form(words[1]) or ["/bin/sh", "-c", words[1]]


def hostport(value):
    """'HOST:PORT' or '[V6]:PORT' -> (host, port)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def compose_env(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict((e.split("=", 1) + [None])[:2] for e in env)
    return env


def compose_ports(service):
    """[(host_ip, host_port, container_port)] of the short port syntax."""
    out = []
    for p in service.get("ports") or []:
        parts = str(p).split("/")[0].split(":")
        assert len(parts) == 3, "publish %r with an explicit host address" % p
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def proxy_flags():
    """The long flags listed by `mongotap --help` (the proxy options)."""
    res = subprocess.run([helpers.mongotap_bin(), "--help"], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    flags = set(re.findall(r"^\s+(--[a-z0-9][a-z0-9-]*)", res.stdout, re.M))
    assert {"--listen", "--upstream", "--admin", "--admin-token"} <= flags, res.stdout
    return flags


def env_name(flag):
    return "MONGOTAP_" + flag[2:].upper().replace("-", "_")


def subcommand_env_names():
    """Variables the console and report subcommands name in their --help (env MONGOTAP_...)."""
    names = set()
    for sub in ("console", "report"):
        res = subprocess.run([helpers.mongotap_bin(), sub, "--help"], capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        names |= set(re.findall(r"env (MONGOTAP_[A-Z0-9_]+)", res.stdout + res.stderr))
    return names


def read(path):
    with open(path) as f:
        return f.read()


def load_k8s():
    with open(K8S) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    assert len(deployments) == 1, [d.get("kind") for d in docs]
    return deployments[0]


def k8s_pod(deployment):
    spec = deployment["spec"]["template"]["spec"]
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    taps = [c for c in containers if any(e["name"].startswith("MONGOTAP_")
                                         for e in c.get("env") or [])]
    assert len(taps) == 1, [c["name"] for c in containers]
    apps = [c for c in spec.get("containers") or [] if c is not taps[0]]
    assert apps, "no app container beside the mongotap sidecar"
    return spec, taps[0], apps


def k8s_env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


@pytest.fixture(scope="module")
def runtime():
    stages = parse_dockerfile(DOCKERFILE)
    assert len(stages) >= 2, "docker/Dockerfile should be multi-stage"
    return stages[-1]


@pytest.fixture(scope="module")
def compose():
    with open(COMPOSE) as f:
        return yaml.safe_load(f)


# ---- Dockerfile ----------------------------------------------------------------------------

def test_build_stage_runs_the_build_script_the_test_command_runs():
    stages = parse_dockerfile(DOCKERFILE)
    build = stages[0]
    assert build["from"] == "debian:bookworm", build["from"]
    runs = " ".join(instructions(build, "RUN"))
    assert re.search(r"(^|[\s/])scripts/build\.sh\b", runs), runs
    assert re.search(r"^scripts/build\.sh\b", read(os.path.join(ROOT, "scripts", "test.sh")),
                     re.M), "scripts/test.sh no longer runs scripts/build.sh"
    copied = [shlex.split(t)[0] for t in instructions(build, "COPY")]
    assert "scripts/build.sh" in copied or "scripts/" in copied or "." in copied, copied
    # the runtime stage takes the binary from the stage that built it
    froms = [t for t in instructions(stages[-1], "COPY") if t.startswith("--from=")]
    assert froms and all(t.split()[0] in ("--from=0", "--from=%s" % build["name"])
                         for t in froms), froms


def test_build_stage_copies_every_folder_cmake_needs():
    build = parse_dockerfile(DOCKERFILE)[0]
    copied = {shlex.split(t)[0].rstrip("/") for t in instructions(build, "COPY")}
    if "." in copied:
        return
    top = read(os.path.join(ROOT, "CMakeLists.txt"))
    subdirs = re.findall(r"add_subdirectory\(\s*([^\s)]+)", top)
    assert subdirs
    missing = [d for d in subdirs + ["CMakeLists.txt"] if d not in copied]
    assert not missing, "docker/Dockerfile does not copy %s" % missing


def _pkg_of(path):
    """The Debian package owning a file (merged /usr: try both spellings), or None."""
    candidates = [path]
    if path.startswith("/usr/lib/"):
        candidates.append(path[len("/usr"):])
    elif path.startswith("/lib/"):
        candidates.append("/usr" + path)
    for p in candidates:
        res = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if res.returncode == 0:
            return res.stdout.split(":")[0].strip()
    return None


def test_dockerignore_keeps_every_copied_source():
    """BuildKit reads docker/Dockerfile.dockerignore: it must not hide what gets copied."""
    ignore = os.path.join(ROOT, "docker", "Dockerfile.dockerignore")
    patterns = [p.strip().rstrip("/") for p in read(ignore).splitlines()
                if p.strip() and not p.startswith("#")]
    assert "node_modules" in patterns and any(p.startswith("build") for p in patterns), patterns
    for stage in parse_dockerfile(DOCKERFILE):
        for text in instructions(stage, "COPY"):
            words = shlex.split(text)
            if words[0].startswith("--from="):
                continue
            for src in words[:-1]:
                src = src.rstrip("/")
                assert os.path.exists(os.path.join(ROOT, src)), src
                hidden = [p for p in patterns
                          if fnmatch.fnmatch(src, p) or fnmatch.fnmatch(src, p + "/*")]
                assert not hidden, "%s is copied but ignored by %s" % (src, hidden)


def test_build_stage_installs_every_library_cmake_looks_for():
    if not shutil.which("dpkg") or not shutil.which("pkg-config"):
        pytest.skip("dpkg or pkg-config missing: not a Debian build host")
    pkgs = set(apt_packages(parse_dockerfile(DOCKERFILE)[0]))
    cmake_text = ""
    for dirpath, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(("build", "node_modules", "."))]
        if "CMakeLists.txt" in files:
            cmake_text += read(os.path.join(dirpath, "CMakeLists.txt"))
    needed = {}
    for m in re.finditer(r"pkg_check_modules\(\s*\w+\s+(?:REQUIRED\s+)?(?:IMPORTED_TARGET\s+)?"
                         r"([\w.+-]+)", cmake_text):
        module = m.group(1)
        res = subprocess.run(["pkg-config", "--variable=pcfiledir", module], capture_output=True,
                             text=True)
        assert res.returncode == 0, "pkg-config does not know %s (run scripts/setup.sh)" % module
        needed[module] = _pkg_of(os.path.join(res.stdout.strip(), module + ".pc"))
    for m in re.finditer(r"find_library\(\s*\w+\s+([\w.+-]+)", cmake_text):
        lib = m.group(1)
        res = subprocess.run(["gcc", "-print-file-name=lib%s.so" % lib], capture_output=True,
                             text=True)
        needed["lib" + lib] = _pkg_of(os.path.normpath(res.stdout.strip()))
    assert len(needed) >= 8, needed
    missing = {k: v for k, v in needed.items() if v not in pkgs}
    assert not missing, "build stage lacks the -dev packages %s" % missing


def test_runtime_stage_installs_every_library_the_binary_links(runtime):
    if not shutil.which("dpkg") or not shutil.which("readelf"):
        pytest.skip("dpkg or readelf missing: not a Debian build host")
    assert runtime["from"] == "debian:bookworm-slim", runtime["from"]
    binary = helpers.mongotap_bin()
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True)
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn.stdout)
    assert "libuv.so.1" in needed, needed
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    where = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd.stdout, re.M))
    pkgs = set(apt_packages(runtime))
    missing = []
    for soname in needed:
        owner = _pkg_of(where.get(soname, soname))
        assert owner, "no Debian package owns %s" % soname
        if owner not in pkgs | BASE_IMAGE_PACKAGES | SANITIZER_PACKAGES:
            missing.append("%s (%s)" % (owner, soname))
    assert not missing, "runtime stage lacks %s" % missing
    assert not [p for p in pkgs if p.endswith("-dev")], pkgs


def test_every_package_named_exists():
    """Each package the images install is a real Debian package (installed here by setup.sh)."""
    if not shutil.which("dpkg-query"):
        pytest.skip("dpkg-query missing: not a Debian build host")
    pkgs = set()
    for path in (DOCKERFILE, TVGUIDE_DOCKERFILE):
        for stage in parse_dockerfile(path):
            pkgs |= set(apt_packages(stage))
    assert "libh2o0.13" in pkgs and "python3-mongoengine" in pkgs, pkgs
    unknown = [p for p in sorted(pkgs)
               if subprocess.run(["dpkg-query", "-W", p], capture_output=True).returncode != 0]
    assert not unknown, "not installed on this Debian host (typo?): %s" % unknown


def test_runtime_stage_runs_mongotap_as_non_root(runtime):
    users = instructions(runtime, "USER")
    assert users, "runtime stage has no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "USER %s: use a numeric non-zero uid" % user
    assert exec_form(instructions(runtime, "ENTRYPOINT")[-1]) == ["mongotap"]
    dests = [shlex.split(t)[-1] for t in instructions(runtime, "COPY")]
    assert "/usr/local/bin/mongotap" in dests, dests


def test_runtime_ports_match_expose_and_environment(runtime):
    exposed = {int(p.split("/")[0]) for t in instructions(runtime, "EXPOSE") for p in t.split()}
    assert exposed == {27018, 27080}, exposed
    env = env_of(runtime)
    assert hostport(env["MONGOTAP_LISTEN"]) == ("0.0.0.0", 27018), env
    admin_host, admin_port = hostport(env.get("MONGOTAP_ADMIN", "127.0.0.1:27080"))
    assert admin_host in LOOPBACK and admin_port == 27080, env
    assert "MONGOTAP_ADMIN_TOKEN" not in env, "no token baked into the image"


def test_healthcheck_sends_get_healthz_from_the_copied_script(runtime):
    cmd = healthcheck_cmd(runtime)
    copies = {shlex.split(t)[-1]: shlex.split(t)[-2] for t in instructions(runtime, "COPY")}
    assert cmd[0] in copies, "HEALTHCHECK runs %s, which no COPY installs" % cmd[0]
    assert copies[cmd[0]] == "docker/healthcheck.sh"
    assert "--ready" not in cmd, "the image's own check is liveness: /healthz"
    script = read(HEALTHCHECK)
    assert "printf 'GET %s HTTP/1.0" in script
    assert "path=/healthz" in script and "path=/readyz" in script
    assert script.startswith("#!/bin/bash"), "needs bash for /dev/tcp"
    assert os.access(HEALTHCHECK, os.X_OK)


# ---- MONGOTAP_* variables <-> flags ---------------------------------------------------------

@pytest.mark.parametrize("path", [DOCKERFILE, COMPOSE, K8S, HEALTHCHECK, TVGUIDE_DOCKERFILE],
                         ids=os.path.basename)
def test_every_mongotap_variable_is_a_proxy_flag(path):
    allowed = {env_name(f) for f in proxy_flags()}
    used = set(ENV_NAME_RE.findall(read(path)))
    assert used <= allowed, "%s uses %s, not flags of mongotap --help" % (
        os.path.relpath(path, ROOT), sorted(used - allowed))


def test_readme_names_only_real_variables():
    # MONGOTAP_BIN picks the binary for the test harness and the demo script;
    # MONGOTAP_REPLAY_WRITE regenerates the replay test's reviewed outputs; MONGOTAP_URI is
    # what `mongotap run` sets for its COMMAND (its --help says so)
    allowed = {env_name(f) for f in proxy_flags()} | subcommand_env_names() | {
        "MONGOTAP_BIN", "MONGOTAP_REPLAY_WRITE", "MONGOTAP_URI"}
    used = set(ENV_NAME_RE.findall(read(README)))
    assert used and used <= allowed, sorted(used - allowed)


# ---- compose --------------------------------------------------------------------------------

def test_compose_services_and_images(compose):
    services = compose["services"]
    assert {"mongo", "mongotap", "tvguide"} <= set(services), list(services)
    image = services["mongo"]["image"]
    assert re.fullmatch(r"(docker\.io/)?(library/)?mongo:\d[\w.-]*", image), \
        "mongo should be the official image with a version tag, not %r" % image
    base = os.path.dirname(COMPOSE)
    build = services["mongotap"]["build"]
    assert os.path.realpath(os.path.join(base, build["context"])) == os.path.realpath(ROOT)
    assert os.path.realpath(os.path.join(base, build["context"], build["dockerfile"])) == \
        os.path.realpath(DOCKERFILE)
    tv = services["tvguide"]["build"]
    tv_context = tv if isinstance(tv, str) else tv["context"]
    assert os.path.realpath(os.path.join(base, tv_context)) == os.path.realpath(TVGUIDE_DIR)


def test_compose_addresses_agree(compose, runtime):
    services = compose["services"]
    env = dict(env_of(runtime))
    env.update({k: v for k, v in compose_env(services["mongotap"]).items()})
    listen = hostport(env["MONGOTAP_LISTEN"])
    admin = hostport(env["MONGOTAP_ADMIN"])
    assert listen == ("0.0.0.0", 27018) and admin == ("0.0.0.0", 27080), env
    # a non-loopback admin endpoint: the token can be passed through
    assert "MONGOTAP_ADMIN_TOKEN" in compose_env(services["mongotap"])
    upstream = hostport(env["MONGOTAP_UPSTREAM"])
    assert upstream == ("mongo", 27017), upstream

    exposed = {int(p) for t in instructions(runtime, "EXPOSE") for p in t.split()}
    published = compose_ports(services["mongotap"])
    assert {c for _, _, c in published} == {listen[1], admin[1]} <= exposed, published
    for name, service in services.items():
        for host_ip, _, _ in compose_ports(service):
            assert host_ip == "127.0.0.1", "%s publishes on %s, not loopback" % (name, host_ip)

    uri = urllib.parse.urlsplit(compose_env(services["tvguide"])["MONGODB_URI"])
    assert (uri.hostname, uri.port) == ("mongotap", listen[1]), uri
    assert "directConnection=true" in uri.query
    tv_exposed = {int(p) for s in parse_dockerfile(TVGUIDE_DOCKERFILE)
                  for t in instructions(s, "EXPOSE") for p in t.split()}
    assert {c for _, _, c in compose_ports(services["tvguide"])} == tv_exposed == {5000}


def test_compose_waits_for_healthy_dependencies(compose, runtime):
    services = compose["services"]
    assert services["mongotap"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert services["tvguide"]["depends_on"]["mongotap"]["condition"] == "service_healthy"
    assert "mongosh" in services["mongo"]["healthcheck"]["test"]
    # the app waits until mongotap is ready: its upstream answers
    test = services["mongotap"]["healthcheck"]["test"]
    copies = {shlex.split(t)[-1]: shlex.split(t)[-2] for t in instructions(runtime, "COPY")}
    assert test[0] == "CMD" and copies.get(test[1]) == "docker/healthcheck.sh", test
    assert test[2:] == ["--ready"], test


def _compose_cli():
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if not shutil.which(cmd[0]):
            continue
        if subprocess.run(cmd + ["version"], capture_output=True, timeout=60).returncode == 0:
            return cmd
    return None


def test_compose_config_validates():
    cmd = _compose_cli()
    if cmd is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed "
                    "(Debian's docker-compose package validates offline)")
    env = {k: v for k, v in os.environ.items() if k != "MONGOTAP_ADMIN_TOKEN"}
    res = subprocess.run(cmd + ["-f", COMPOSE, "config"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    resolved = yaml.safe_load(res.stdout)
    assert {"mongo", "mongotap", "tvguide"} <= set(resolved["services"])


# ---- Kubernetes -----------------------------------------------------------------------------

def _port_number(container, port):
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    assert port in named, "probe port %r is not a named port of %s" % (port, container["name"])
    return named[port]


def test_k8s_sidecar_addresses_probes_and_scrape_annotations():
    deployment = load_k8s()
    spec, tap, apps = k8s_pod(deployment)
    env = k8s_env(tap)
    listen, admin = hostport(env["MONGOTAP_LISTEN"]), hostport(env["MONGOTAP_ADMIN"])
    assert listen[0] in LOOPBACK, "the app shares the Pod: listen on loopback, not %s" % listen[0]
    assert admin[0] == "0.0.0.0", admin
    assert env["MONGOTAP_ADMIN_TOKEN"]["secretKeyRef"]["key"], env["MONGOTAP_ADMIN_TOKEN"]
    assert hostport(env["MONGOTAP_UPSTREAM"])[1] == 27017

    uris = [urllib.parse.urlsplit(v) for a in apps for k, v in k8s_env(a).items()
            if isinstance(v, str) and v.startswith("mongodb://")]
    assert uris and all(u.hostname in LOOPBACK and u.port == listen[1] for u in uris), uris

    notes = deployment["spec"]["template"]["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert int(notes["prometheus.io/port"]) == admin[1]
    assert notes["prometheus.io/path"] == "/metrics"

    for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                       ("startupProbe", "/healthz")):
        probe = tap[kind]["httpGet"]
        assert probe["path"] == path, (kind, probe)
        assert _port_number(tap, probe["port"]) == admin[1], probe
    if tap in (spec.get("initContainers") or []):
        assert tap.get("restartPolicy") == "Always", "an init container sidecar needs it"


def test_k8s_resources_and_non_root():
    spec, tap, apps = k8s_pod(load_k8s())
    pod_ctx = spec.get("securityContext") or {}
    for c in [tap] + apps:
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(res.get(part) or {}), (c["name"], res)
        ctx = dict(pod_ctx, **(c.get("securityContext") or {}))
        assert ctx.get("runAsNonRoot") is True, c["name"]
        assert ctx.get("runAsUser", 1) != 0, c["name"]
    runtime_user = instructions(parse_dockerfile(DOCKERFILE)[-1], "USER")[-1].split(":")[0]
    tap_user = dict(pod_ctx, **(tap.get("securityContext") or {})).get("runAsUser")
    assert tap_user in (None, int(runtime_user)), (tap_user, runtime_user)


# ---- run for real: the HEALTHCHECK script, the environments, the demo command ---------------

def run_healthcheck(env, *args):
    full = {"PATH": "/usr/bin:/bin"}
    full.update(env)
    res = subprocess.run([HEALTHCHECK] + [str(a) for a in args], capture_output=True,
                         text=True, timeout=20, env=full)
    return res.returncode, res.stdout + res.stderr


def not_mongotap_pid():
    """A process whose command line is not mongotap's: this test itself."""
    return os.getpid()


def test_healthcheck_passes_for_a_live_admin_endpoint_and_fails_without(mongotap):
    tap = mongotap("--admin-token", "s3cret", upstream="127.0.0.1:9")
    admin = "%s:%d" % tap.admin
    rc, out = run_healthcheck({"MONGOTAP_ADMIN": admin}, not_mongotap_pid())
    assert rc == 0 and "200" in out, out
    # a bind on every interface is checked over loopback
    rc, out = run_healthcheck({"MONGOTAP_ADMIN": "0.0.0.0:%d" % tap.admin[1]}, not_mongotap_pid())
    assert rc == 0, out
    # the wire port answers no HTTP: not healthy
    rc, out = run_healthcheck({"MONGOTAP_ADMIN": tap.address}, not_mongotap_pid())
    assert rc != 0, out
    assert tap.stop() == 0
    rc, out = run_healthcheck({"MONGOTAP_ADMIN": admin}, not_mongotap_pid())
    assert rc != 0, out


def test_healthcheck_ready_follows_the_upstream(mongotap, jongodb):
    down = mongotap(upstream="127.0.0.1:%d" % helpers.free_port())
    assert down.wait_for_log(r"not reachable", 15), down.logs()
    env = {"MONGOTAP_ADMIN": "%s:%d" % down.admin}
    rc, out = run_healthcheck(env, "--ready", not_mongotap_pid())
    assert rc != 0 and "/readyz answered 'HTTP/1." in out and " 503" in out, out
    rc, out = run_healthcheck(env, not_mongotap_pid())
    assert rc == 0, "alive all the same: %s" % out
    up = mongotap()
    assert up.wait_for_log(r"reachable: new connections go to", 15), up.logs()
    rc, out = run_healthcheck({"MONGOTAP_ADMIN": "%s:%d" % up.admin}, "--ready",
                              not_mongotap_pid())
    assert rc == 0 and "/readyz: HTTP/1." in out and " 200" in out, out


def test_healthcheck_follows_flags_over_environment(mongotap):
    port = helpers.free_port()
    tap = mongotap("--admin", "127.0.0.1:%d" % port, upstream="127.0.0.1:9")
    wrong = {"MONGOTAP_ADMIN": "127.0.0.1:%d" % helpers.free_port()}
    rc, out = run_healthcheck(wrong, tap.pid)
    assert rc == 0, out
    rc, out = run_healthcheck(wrong, not_mongotap_pid())
    assert rc != 0, out


def test_healthcheck_with_admin_off_checks_the_listener(mongotap):
    tap = mongotap("--admin", "off", upstream="127.0.0.1:9")
    env = {"MONGOTAP_ADMIN": "off", "MONGOTAP_LISTEN": "%s,127.0.0.1:1" % tap.address}
    rc, out = run_healthcheck(env, not_mongotap_pid())
    assert rc == 0, out
    assert tap.stop() == 0
    rc, out = run_healthcheck(env, not_mongotap_pid())
    assert rc != 0, out


def loopback_env(env, tmp_path):
    """A deployment's MONGOTAP_* environment made runnable here: addresses on loopback port 0,
    files under tmp_path, a token for a Secret reference or a pass-through variable."""
    out = {}
    for key, value in env.items():
        if key in ("MONGOTAP_LISTEN", "MONGOTAP_ADMIN") and value != "off":
            value = ",".join("127.0.0.1:0" for _ in value.split(","))
        elif key == "MONGOTAP_ADMIN_TOKEN":
            value = "test-token"
        elif key in ("MONGOTAP_FINDINGS_LOG", "MONGOTAP_REPORT"):
            value = str(tmp_path / os.path.basename(value))
        elif not isinstance(value, str):
            raise AssertionError("%s=%r: unexpected value" % (key, value))
        out[key] = value
    return out


def deployment_envs(runtime, compose):
    image = env_of(runtime)
    composed = dict(image, **compose_env(compose["services"]["mongotap"]))
    _, tap, _ = k8s_pod(load_k8s())
    return {"image": image, "compose": composed, "k8s": dict(image, **k8s_env(tap))}


@pytest.mark.parametrize("where", ["image", "compose", "k8s"])
def test_deployment_environment_starts_mongotap(where, runtime, compose, tmp_path, monkeypatch):
    env = loopback_env(deployment_envs(runtime, compose)[where], tmp_path)
    for key in list(os.environ):
        if key.startswith("MONGOTAP_") and key != "MONGOTAP_BIN":
            monkeypatch.delenv(key)
    tap = helpers.Mongotap([], env=env)
    try:
        assert tap.admin is not None, tap.logs()
        status, _, body = tap.get("/healthz")
        assert (status, body.strip()) == (200, b"ok")
        if "MONGOTAP_ADMIN_TOKEN" in env:
            assert tap.get("/api/stats")[0] == 401
            assert tap.get("/api/stats", token="test-token")[0] == 200
    finally:
        rc = tap.stop()
    assert rc == 0, tap.logs()
    assert not tap.sanitizer_reports(), tap.logs()
    if "MONGOTAP_REPORT" in env:
        with open(env["MONGOTAP_REPORT"]) as f:
            assert isinstance(json.load(f), dict)


def test_tvguide_image_command_serves_the_guide_and_mongotap_flags_n_plus_one(mongotap,
                                                                               compose):
    stage = parse_dockerfile(TVGUIDE_DOCKERFILE)[-1]
    assert stage["from"].startswith("debian:bookworm")
    user = instructions(stage, "USER")[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0
    for text in instructions(stage, "COPY"):
        for src in shlex.split(text)[:-1]:
            assert os.path.exists(os.path.join(TVGUIDE_DIR, src)), src
    cmd = exec_form(instructions(stage, "CMD")[-1])
    assert cmd and cmd[:2] == ["sh", "-c"], cmd
    port = helpers.free_port()
    script = cmd[2]
    assert "--host 0.0.0.0" in script and "--port 5000" in script, script
    script = script.replace("--host 0.0.0.0", "--host 127.0.0.1")
    script = script.replace("--port 5000", "--port %d" % port)

    tap = mongotap()
    uri = urllib.parse.urlsplit(compose_env(compose["services"]["tvguide"])["MONGODB_URI"])
    uri = urllib.parse.urlunsplit(uri._replace(netloc=tap.address))
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}
    env.update(env_of(stage))
    env["MONGODB_URI"] = uri
    proc = subprocess.Popen(["sh", "-c", script], cwd=TVGUIDE_DIR, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    out = helpers._OutputCollector(proc.stdout, "tvguide-out")
    viewer = None
    try:
        ready = out.wait_for(r"Running on http://127\.0\.0\.1:%d" % port, 60)
        assert ready, "tvguide did not start (exit %s):\n%s" % (proc.poll(), out.text())
        assert "seeded 20 channels and 50 shows" in out.text()
        viewer = FindingWaiter(*tap.admin)
        status, headers, body = helpers.http_get("http://127.0.0.1:%d/" % port, timeout=30)
        assert status == 200, body[:500]
        assert int(headers["X-Mongo-Finds"]) > 1, headers
        assert viewer.wait(15), "no finding event within 15 s"
        findings = [f for f in tap.get_json("/api/findings")["findings"]
                    if f["children"]["collection"] == "channel"]
        assert findings and findings[0]["type"] == "n_plus_one", tap.get_json("/api/findings")
    finally:
        if viewer:
            viewer.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        out.join()


class FindingWaiter:
    """A /events subscriber, connected before the traffic, that waits for a `finding` event."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: %s:%d\r\n"
                          b"Accept: text/event-stream\r\n\r\n" % (host.encode(), port))

    def wait(self, timeout):
        deadline, seen = time.monotonic() + timeout, b""
        while b"event: finding" not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            if not chunk:
                return False
            seen = seen[-64:] + chunk
        return True

    def close(self):
        self.sock.close()
