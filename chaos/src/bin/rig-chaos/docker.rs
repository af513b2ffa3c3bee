//! Faults through the `docker` CLI, on the rig's containers only: SIGKILL with the disk kept,
//! pause, disconnection from the rig's network, one-way and group partitions (iptables rules in
//! the host's `DOCKER-USER` chain between the containers' addresses on the rig network), Redis
//! stopped, the whole cluster stopped and started, a node replaced with an empty volume.

use std::path::PathBuf;

use anyhow::{Context, bail};
use parking_lot::Mutex;

/// Tag on every iptables rule this tool inserts, so they can be found and removed.
const RULE_TAG: &str = "loci-rig-chaos";

pub struct Docker {
    pub project: String,
    pub network: String,
    pub nodes: usize,
    /// `deploy/rig.sh`, to re-create a replaced node with the rig's own compose settings.
    pub rig_script: PathBuf,
    /// Inserted iptables rules (source, destination), to delete them again.
    rules: Mutex<Vec<(String, String)>>,
}

pub fn container(node: usize) -> String {
    format!("loci-{}", node + 1)
}

async fn run(program: &str, args: &[&str], envs: &[(&str, String)]) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().await.with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Docker {
    pub fn new(project: &str, nodes: usize, rig_script: PathBuf) -> Self {
        Docker {
            project: project.into(),
            network: format!("{project}_rig"),
            nodes,
            rig_script,
            rules: Mutex::new(Vec::new()),
        }
    }

    pub async fn docker(&self, args: &[&str]) -> anyhow::Result<String> {
        run("docker", args, &[]).await
    }

    pub async fn kill(&self, node: usize) -> anyhow::Result<()> {
        self.docker(&["kill", "-s", "KILL", &container(node)]).await.map(drop)
    }

    pub async fn start(&self, names: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["start"];
        args.extend(names.iter().map(String::as_str));
        self.docker(&args).await.map(drop)
    }

    pub async fn pause(&self, node: usize) -> anyhow::Result<()> {
        self.docker(&["pause", &container(node)]).await.map(drop)
    }

    pub async fn unpause(&self, node: usize) -> anyhow::Result<()> {
        self.docker(&["unpause", &container(node)]).await.map(drop)
    }

    pub async fn disconnect(&self, node: usize) -> anyhow::Result<()> {
        self.docker(&["network", "disconnect", "-f", &self.network, &container(node)]).await.map(drop)
    }

    pub async fn connect(&self, node: usize) -> anyhow::Result<()> {
        self.docker(&["network", "connect", &self.network, &container(node)]).await.map(drop)
    }

    pub async fn stop(&self, names: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["stop", "-t", "10"];
        args.extend(names.iter().map(String::as_str));
        self.docker(&args).await.map(drop)
    }

    pub fn all_nodes(&self) -> Vec<String> {
        (0..self.nodes).map(container).collect()
    }

    /// The container's address on the rig network (it changes when the container is re-attached).
    pub async fn ip(&self, node: usize) -> anyhow::Result<String> {
        let fmt = format!("{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}", self.network);
        let ip = self.docker(&["inspect", "-f", &fmt, &container(node)]).await?;
        if ip.is_empty() || ip == "<no value>" {
            bail!("{} has no address on {}", container(node), self.network);
        }
        Ok(ip)
    }

    /// Whether host iptables rules can be used for partitions between containers.
    pub async fn iptables_usable(&self) -> bool {
        run("iptables", &["-S", "DOCKER-USER"], &[]).await.is_ok()
    }

    /// Drop every packet from `from` to `to` (one way).
    pub async fn block(&self, from: usize, to: usize) -> anyhow::Result<()> {
        let (a, b) = (self.ip(from).await?, self.ip(to).await?);
        run(
            "iptables",
            &["-I", "DOCKER-USER", "-s", &a, "-d", &b, "-m", "comment", "--comment", RULE_TAG, "-j", "DROP"],
            &[],
        )
        .await?;
        self.rules.lock().push((a, b));
        Ok(())
    }

    pub async fn unblock_all(&self) -> anyhow::Result<()> {
        let rules = std::mem::take(&mut *self.rules.lock());
        for (a, b) in rules {
            run(
                "iptables",
                &["-D", "DOCKER-USER", "-s", &a, "-d", &b, "-m", "comment", "--comment", RULE_TAG, "-j", "DROP"],
                &[],
            )
            .await?;
        }
        Ok(())
    }

    /// Remove the node's container and volume, and create it again from the compose file with
    /// an empty disk: it starts as a new member (new node id) under the same name, joining with
    /// `--join` only, as operations.md's replacement procedure says.
    pub async fn replace(&self, node: usize) -> anyhow::Result<()> {
        let name = container(node);
        self.docker(&["rm", "-f", &name]).await?;
        self.docker(&["volume", "rm", &format!("{}_{name}-data", self.project)]).await?;
        let script = self.rig_script.to_string_lossy().into_owned();
        run(
            &script,
            &["compose", "up", "-d", "--no-deps", &name],
            &[
                ("LOCI_RIG_PROJECT", self.project.clone()),
                ("RIG_NODES", self.nodes.to_string()),
                ("LOCI_RIG_BOOTSTRAP_EXPECT", "0".into()),
            ],
        )
        .await
        .map(drop)
    }

    /// Undo every fault: rules removed, containers unpaused, re-attached, started.
    pub async fn heal(&self) {
        if let Err(e) = self.unblock_all().await {
            eprintln!("heal: {e:#}");
        }
        for node in 0..self.nodes {
            let _ = self.unpause(node).await;
            let _ = self.connect(node).await;
        }
        let mut all = self.all_nodes();
        all.push("loci-redis".into());
        let _ = self.start(&all).await;
    }
}
