//! `cargo xtask manifests`: checks deploy/kubernetes/*.yaml against the
//! Kubernetes API schemas, offline, with `kubernetes-validate` (PyPI; it
//! bundles the schemas), strictly (an unknown field is an error), for the
//! oldest Kubernetes the manifests support and the newest the tool knows.
//! Then it takes the ConfigMap's scale.toml out, for the image check to
//! serve.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xshell::{Shell, cmd};

/// The oldest Kubernetes the manifests are for: the Deployment's `preStop`
/// `sleep` action is on by default from 1.30.
const OLDEST_KUBERNETES: &str = "1.30.0";

/// Where `.ci/run` installs kubernetes-validate when it is not on the PATH.
pub fn venv(root: &Path) -> PathBuf {
    crate::target_dir(root).join("deploy-venv")
}

/// How deploy/kubernetes runs the image.
pub struct Deployment {
    /// The ConfigMap's scale.toml, written under target/.
    pub config: PathBuf,
    /// The container's `args`.
    pub args: Vec<String>,
}

/// Validates every manifest; returns how the Deployment runs the image.
pub fn check(sh: &Shell, root: &Path) -> Result<Deployment> {
    let local = venv(root).join("bin");
    let (validate, python) = if local.join("kubernetes-validate").is_file() {
        (local.join("kubernetes-validate"), local.join("python3"))
    } else if cmd!(sh, "kubernetes-validate --version").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
        (PathBuf::from("kubernetes-validate"), PathBuf::from("python3"))
    } else {
        bail!(
            "kubernetes-validate is missing: `python3 -m venv {0} && {0}/bin/pip install kubernetes-validate` \
             (or run .ci/run)",
            venv(root).display()
        );
    };
    let dir = root.join("deploy/kubernetes");
    let mut manifests = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
            manifests.push(path);
        }
    }
    manifests.sort();
    if manifests.is_empty() {
        bail!("{} holds no manifests", dir.display());
    }
    let latest = cmd!(sh, "{validate} --version").read()?;
    for version in [OLDEST_KUBERNETES, latest.trim()] {
        let manifests = &manifests;
        cmd!(sh, "{validate} --strict --quiet --kubernetes-version {version} {manifests...}")
            .run()
            .with_context(|| format!("the manifests do not validate against Kubernetes {version}"))?;
    }
    for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"] {
        let needle = format!("kind: {kind}\n");
        if !manifests.iter().any(|path| std::fs::read_to_string(path).is_ok_and(|text| text.contains(&needle))) {
            bail!("no {kind} in {}", dir.display());
        }
    }

    // PyYAML comes with kubernetes-validate.
    let configmap = dir.join("configmap.yaml");
    let script = "import sys, yaml; sys.stdout.write(yaml.safe_load(open(sys.argv[1]))['data']['scale.toml'])";
    let toml = cmd!(sh, "{python} -c {script} {configmap}")
        .quiet()
        .read()
        .with_context(|| format!("taking scale.toml out of {}", configmap.display()))?;
    let out = crate::target_dir(root).join("kubernetes-check");
    std::fs::create_dir_all(&out)?;
    let config = out.join("scale.toml");
    std::fs::write(&config, toml + "\n")?;

    let deployment = dir.join("deployment.yaml");
    let script = "import sys, yaml; \
        print('\\n'.join(yaml.safe_load(open(sys.argv[1]))['spec']['template']['spec']['containers'][0].get('args', [])))";
    let args = cmd!(sh, "{python} -c {script} {deployment}")
        .quiet()
        .read()
        .with_context(|| format!("reading the container's args in {}", deployment.display()))?;
    Ok(Deployment { config, args: args.lines().map(str::to_string).collect() })
}
