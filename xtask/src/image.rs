//! `cargo xtask image`: a container image of `scale serve`, built with podman
//! from nothing but the `scale` binary, the shared libraries `ldd` lists for
//! it, a default configuration and the built-in hello function (FROM scratch:
//! no base image is pulled).
//!
//! The image runs `scale serve --config /etc/scale/scale.toml` as user
//! 65532, serving on 0.0.0.0:8080 with the admin listener (metrics, health)
//! on 0.0.0.0:9090. Mount a folder with a `scale.toml` and its functions on
//! `/etc/scale` to serve them, or build an image FROM this one that adds
//! functions to /usr/share/scale/functions (where the hello function is).
//!
//! [`check`] is the CI test of the image: it builds it from the test build's
//! binary, runs it with a configuration of two routes and their functions
//! mounted, requests both routes, sends SIGTERM and expects a clean exit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// The tag `cargo xtask image` gives the image by default.
pub const DEFAULT_TAG: &str = "localhost/scale:latest";
/// The tag of the image the CI check builds and runs.
const CHECK_TAG: &str = "localhost/scale:check";
/// The user the server runs as in the image (no name: there is no /etc/passwd).
pub const USER: &str = "65532:65532";
/// The ports the image's server listens on.
pub const PORT: u16 = 8080;
pub const ADMIN_PORT: u16 = 9090;
/// Where the image keeps compiled modules (writable by [`USER`]).
const CACHE_DIR: &str = "/var/cache/scale";
/// The most a container may take to become ready: a debug build compiles
/// the functions slowly.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

const USAGE: &str = "cargo xtask image [--binary PATH] [--tag NAME] [--check]
  --binary  the scale executable to put in the image [default: a release build, made now]
  --tag     the image's name [default: localhost/scale:latest]
  --check   check deploy/kubernetes (cargo xtask manifests), then build the image as
            localhost/scale:check and run its CI test instead";

pub fn run(sh: &Shell, root: &Path, mut args: impl Iterator<Item = String>) -> Result<()> {
    let mut binary = None;
    let mut tag = DEFAULT_TAG.to_string();
    let mut run_check = false;
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value (usage: {USAGE})"));
        match arg.as_str() {
            "--binary" => binary = Some(PathBuf::from(value()?)),
            "--tag" => tag = value()?,
            "--check" => run_check = true,
            other => bail!("unknown argument {other:?} (usage: {USAGE})"),
        }
    }
    let binary = match binary {
        Some(binary) => binary,
        None => {
            let cargo = crate::cargo();
            cmd!(sh, "{cargo} build --release -p scale-cli").run()?;
            crate::target_dir(root).join("release").join("scale")
        }
    };
    if run_check {
        let deployment = crate::manifests::check(sh, root)?;
        return check(sh, root, &binary, Some(&deployment));
    }
    build(sh, root, &binary, &tag)?;
    eprintln!("built {tag}; run it with:");
    eprintln!(
        "  podman --runtime runc run --rm --ulimit nofile=4096:4096 -p 8080:{PORT} -p 9090:{ADMIN_PORT} \
         -v $PWD/my-functions:/etc/scale:ro {tag}"
    );
    Ok(())
}

/// The options every podman call takes: the `runc` runtime (crun refuses
/// hosts with a hybrid cgroup setup).
const RUNTIME: [&str; 2] = ["--runtime", "runc"];

/// Assembles the image's files under target/image and builds it as `tag`.
pub fn build(sh: &Shell, root: &Path, binary: &Path, tag: &str) -> Result<()> {
    if cmd!(sh, "podman --version").quiet().ignore_stdout().run().is_err() {
        bail!("podman is missing: install it with `apt-get install podman runc` (or run .ci/run)");
    }
    let binary = std::fs::canonicalize(binary).with_context(|| format!("{} is not there", binary.display()))?;
    let context = crate::target_dir(root).join("image");
    if context.exists() {
        std::fs::remove_dir_all(&context).with_context(|| format!("emptying {}", context.display()))?;
    }
    let rootfs = context.join("rootfs");
    copy(&binary, &rootfs.join("usr/local/bin/scale"))?;
    for library in shared_libraries(sh, &binary)? {
        let inside = rootfs.join(library.strip_prefix("/").expect("ldd prints absolute paths"));
        copy(&library, &inside)?;
    }
    copy(
        &root.join("crates/scale-cli/assets/hello.scale"),
        &rootfs.join(FUNCTIONS_DIR.trim_start_matches('/')).join("hello.scale"),
    )?;
    std::fs::create_dir_all(rootfs.join("etc/scale"))?;
    std::fs::write(rootfs.join("etc/scale/scale.toml"), DEFAULT_CONFIG)?;
    // Writable places for the server's user, owned by it (COPY --chown below).
    std::fs::create_dir_all(context.join("writable").join(CACHE_DIR.trim_start_matches('/')))?;
    std::fs::create_dir_all(context.join("writable/tmp"))?;
    std::fs::write(context.join("Containerfile"), containerfile())?;
    let containerfile = context.join("Containerfile");
    cmd!(sh, "podman {RUNTIME...} build --quiet --tag {tag} --file {containerfile} {context}")
        .run()
        .with_context(|| format!("podman could not build {tag}"))?;
    Ok(())
}

/// Where the image keeps the functions it carries (the built-in hello one;
/// images built FROM it add theirs).
const FUNCTIONS_DIR: &str = "/usr/share/scale/functions";

/// The configuration in the image, replaced by the one mounted on /etc/scale.
const DEFAULT_CONFIG: &str = r#"# The image's default configuration: the built-in hello function on every
# path. Mount a folder with your scale.toml (and functions) on /etc/scale.
# The image's command line sets the addresses (0.0.0.0:8080, admin 0.0.0.0:9090).
shutdown_grace = "25s"

[[route]]
path = "/*"
functions = ["/usr/share/scale/functions/hello.scale"]
"#;

fn containerfile() -> String {
    format!(
        r#"FROM scratch
COPY rootfs/ /
COPY --chown={USER} writable/ /
ENV SCALE_CACHE_DIR={CACHE_DIR}
USER {USER}
EXPOSE {PORT} {ADMIN_PORT}
ENTRYPOINT ["/usr/local/bin/scale", "serve", "--config", "/etc/scale/scale.toml", "--listen", "0.0.0.0:{PORT}", "--admin-listen", "0.0.0.0:{ADMIN_PORT}"]
"#
    )
}

/// The shared libraries `binary` loads, the dynamic loader included, as
/// `ldd` resolves them on this machine. Empty for a static binary.
fn shared_libraries(sh: &Shell, binary: &Path) -> Result<Vec<PathBuf>> {
    let output = cmd!(sh, "ldd {binary}").quiet().ignore_status().output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&output.stderr).contains("not a dynamic")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&output.stderr));
    }
    let mut libraries = Vec::new();
    for line in text.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2 (0x...)`,
        // or `linux-vdso.so.1 (0x...)` (in the kernel: nothing to copy).
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let path = rest.split_whitespace().next().unwrap_or_default();
                if path == "not" {
                    bail!("{} needs {}, which is not found", binary.display(), name.trim());
                }
                path
            }
            None => line.split_whitespace().next().unwrap_or_default(),
        };
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    if !libraries.iter().any(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("ld-"))) {
        bail!("ldd named no dynamic loader for {}:\n{text}", binary.display());
    }
    Ok(libraries)
}

/// Copies the file `from` (following links) to `to`, making its folder.
fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to.parent().expect("a file has a folder"))?;
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The CI test of the image: built from `binary`, run with two routes whose
/// functions (a Rust and a Go fixture) are mounted from the host, asked on
/// both routes and on its admin port, then stopped with SIGTERM: it must
/// exit 0 after draining. Then run as deploy/kubernetes/ runs it
/// (`kubernetes`): the ConfigMap's scale.toml, a read-only root, the
/// Deployment's arguments.
pub fn check(sh: &Shell, root: &Path, binary: &Path, kubernetes: Option<&crate::manifests::Deployment>) -> Result<()> {
    let started = Instant::now();
    build(sh, root, binary, CHECK_TAG)?;
    eprintln!("built {CHECK_TAG} from {} in {:.1?}", binary.display(), started.elapsed());

    let fixtures = crate::fixtures_dir(root);
    let config_dir = crate::target_dir(root).join("image-check");
    if config_dir.exists() {
        std::fs::remove_dir_all(&config_dir)?;
    }
    std::fs::create_dir_all(config_dir.join("functions"))?;
    copy(&fixtures.join("rust/modify.scale"), &config_dir.join("functions/modify.scale"))?;
    copy(&fixtures.join("go/http-handler.scale"), &config_dir.join("functions/http-handler.scale"))?;
    std::fs::write(
        config_dir.join("scale.toml"),
        r#"shutdown_grace = "10s"

[defaults]
memory_limit = 32

[[route]]
path = "/rust"
methods = ["GET", "POST"]
functions = ["functions/modify.scale"]

[[route]]
path = "/go/*"
functions = ["functions/http-handler.scale"]
"#,
    )?;
    let mount = format!("{}:/etc/scale:ro", config_dir.display());
    serve_in_container(sh, &["--volume", &mount], &[], |answers| {
        answers.expect("/rust", 200, "modified")?;
        answers.expect("/go/anything/below", 200, "-modified")?;
        answers.expect("/elsewhere", 404, "Not Found\n")?;
        answers.expect_admin("/healthz", 200, "ok\n")?;
        let metrics = answers.admin("/metrics")?;
        if !metrics.contains("route=\"/rust\"") || !metrics.contains("route=\"/go/*\"") {
            bail!("/metrics does not name both routes:\n{metrics}");
        }
        Ok(())
    })?;

    if let Some(deployment) = kubernetes {
        eprintln!("the image as deploy/kubernetes runs it: args {:?}", deployment.args);
        let mount = format!("{}:/etc/scale/scale.toml:ro", deployment.config.display());
        let options = ["--volume", &mount, "--read-only", "--tmpfs", "/var/cache/scale:rw,mode=1777"];
        let args: Vec<&str> = deployment.args.iter().map(String::as_str).collect();
        serve_in_container(sh, &options, &args, |answers| {
            answers.expect("/", 200, "Hello, World!\n")?;
            answers.expect_admin("/readyz", 200, "ready\n")
        })?;
    }
    podman_rmi(sh, CHECK_TAG);
    eprintln!("image check done in {:.1?}", started.elapsed());
    Ok(())
}

/// Runs the check image with the podman `options` and the server `args`,
/// waits until it is ready, checks that it runs as [`USER`], hands its
/// addresses to `test`, then sends SIGTERM: the server must drain and exit 0.
fn serve_in_container(
    sh: &Shell,
    options: &[&str],
    args: &[&str],
    test: impl FnOnce(&Answers<'_>) -> Result<()>,
) -> Result<()> {
    let started = Instant::now();
    // podman's default limits may exceed the hard ones, which runc then cannot set.
    let nofile = format!("nofile={0}:{0}", hard_limit("Max open files")?.min(4096));
    let nproc = format!("nproc={0}:{0}", hard_limit("Max processes")?.min(4096));
    let publish = [format!("127.0.0.1::{PORT}"), format!("127.0.0.1::{ADMIN_PORT}")];
    let [publish_public, publish_admin] = &publish;
    let id = cmd!(
        sh,
        "podman {RUNTIME...} run --detach --ulimit {nofile} --ulimit {nproc} --publish {publish_public} --publish {publish_admin} {options...} {CHECK_TAG} {args...}"
    )
    .read()
    .context("podman could not start the image")?;
    let container = Container { id: id.trim().to_string() };
    let id = container.id.as_str();

    let port = |inside: u16| -> Result<String> {
        let inside = format!("{inside}/tcp");
        let mapped = cmd!(sh, "podman {RUNTIME...} port {id} {inside}").read()?;
        let address = mapped.lines().next().unwrap_or_default().trim().to_string();
        if address.is_empty() {
            bail!("podman maps no host port to {inside}:\n{}", container.logs(sh));
        }
        Ok(address)
    };
    let answers = Answers { sh, public: port(PORT)?, admin: port(ADMIN_PORT)?, container: &container };

    let pid_format = "{{.State.Pid}}";
    let pid = cmd!(sh, "podman {RUNTIME...} inspect --format {pid_format} {id}").read()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
        .with_context(|| format!("reading the status of the container's process {}", pid.trim()))?;
    let uid = status.lines().find_map(|line| line.strip_prefix("Uid:")).unwrap_or_default();
    let expected_uid = USER.split(':').next().expect("USER is uid:gid");
    if uid.split_whitespace().next() != Some(expected_uid) {
        bail!("the server runs as uid {uid:?} instead of {expected_uid}");
    }

    let running_format = "{{.State.Running}}";
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if get(sh, &format!("http://{}/readyz", answers.admin))?.is_some_and(|(status, _)| status == 200) {
            break;
        }
        let running = cmd!(sh, "podman {RUNTIME...} inspect --format {running_format} {id}").read()?;
        if running.trim() != "true" {
            bail!("the container stopped before it was ready:\n{}", container.logs(sh));
        }
        if Instant::now() > deadline {
            bail!("the container was not ready within {READY_TIMEOUT:?}:\n{}", container.logs(sh));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("ready on {} (admin {}) after {:.1?}", answers.public, answers.admin, started.elapsed());

    test(&answers)?;

    cmd!(sh, "podman {RUNTIME...} kill --signal TERM {id}").quiet().ignore_stdout().run()?;
    let code = cmd!(sh, "podman {RUNTIME...} wait {id}").read().context("waiting for the container")?;
    let logs = container.logs(sh);
    if code.trim() != "0" {
        bail!("after SIGTERM the server exited with {}, not 0:\n{logs}", code.trim());
    }
    if !logs.contains("draining") || !logs.lines().any(|line| line.trim() == "stopped") {
        bail!("after SIGTERM the server exited 0 without draining:\n{logs}");
    }
    eprintln!("SIGTERM: drained and exited 0");
    Ok(())
}

/// A running container's addresses on the host.
struct Answers<'a> {
    sh: &'a Shell,
    public: String,
    admin: String,
    container: &'a Container,
}

impl Answers<'_> {
    /// Expects `GET path` on the public port to answer `status` with `body`.
    fn expect(&self, path: &str, status: u16, body: &str) -> Result<()> {
        self.expect_at(&format!("http://{}{path}", self.public), status, body)
    }

    fn expect_admin(&self, path: &str, status: u16, body: &str) -> Result<()> {
        self.expect_at(&format!("http://{}{path}", self.admin), status, body)
    }

    fn expect_at(&self, url: &str, status: u16, body: &str) -> Result<()> {
        match get(self.sh, url)? {
            Some((got, text)) if got == status && text == body => {
                eprintln!("GET {url}: {got} {text:?}");
                Ok(())
            }
            Some((got, text)) => {
                bail!("GET {url}: {got} {text:?}, expected {status} {body:?}\n{}", self.container.logs(self.sh))
            }
            None => bail!("GET {url}: no answer\n{}", self.container.logs(self.sh)),
        }
    }

    /// The body of a 200 answer to `GET path` on the admin port.
    fn admin(&self, path: &str) -> Result<String> {
        match get(self.sh, &format!("http://{}{path}", self.admin))? {
            Some((200, text)) => Ok(text),
            other => bail!("GET {path} on the admin port: {other:?}"),
        }
    }
}

fn podman_rmi(sh: &Shell, tag: &str) {
    let _ =
        cmd!(sh, "podman {RUNTIME...} rmi --force {tag}").quiet().ignore_status().ignore_stdout().ignore_stderr().run();
}

/// A container, removed when dropped.
struct Container {
    id: String,
}

impl Container {
    fn logs(&self, sh: &Shell) -> String {
        let id = &self.id;
        cmd!(sh, "podman {RUNTIME...} logs {id}")
            .quiet()
            .ignore_status()
            .output()
            .map(|output| {
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
            })
            .unwrap_or_else(|err| format!("(podman logs failed: {err})"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(RUNTIME)
            .args(["rm", "--force", "--time", "0", &self.id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `GET url` with curl: the status and body, or `None` when nothing answered.
fn get(sh: &Shell, url: &str) -> Result<Option<(u16, String)>> {
    let write_out = "\n%{http_code}";
    let output = cmd!(sh, "curl --silent --max-time 5 --write-out {write_out} {url}")
        .quiet()
        .ignore_status()
        .output()
        .context("running curl (install it: apt-get install curl)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    match code.trim().parse::<u16>() {
        Ok(0) | Err(_) => Ok(None),
        Ok(status) => Ok(Some((status, body.to_string()))),
    }
}

/// The hard limit `name` (a line of /proc/self/limits, such as `Max open
/// files`) of this process: a container's may not exceed it.
fn hard_limit(name: &str) -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .with_context(|| format!("/proc/self/limits has no {name:?}"))?;
    // The columns after the name: soft limit, hard limit, unit.
    match line.split_whitespace().nth(1) {
        Some("unlimited") => Ok(u64::MAX),
        Some(number) => number.parse().with_context(|| format!("{name} in /proc/self/limits: {number:?}")),
        None => bail!("{name} in /proc/self/limits has no hard limit"),
    }
}
