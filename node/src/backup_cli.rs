//! `loci backup create|list|get|verify|restore|restore-status|delete|schedule`: the backup
//! operations over any node's `loci.v1.Backups` (a global admin key; super_admin to restore).

use clap::Subcommand;
use loci_api::pb;
use serde_json::Value;

use crate::cli::{Client, Conn, s, table};

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Take a backup of every namespace (or of --namespace ones), in the background.
    Create {
        #[arg(long)]
        name: String,
        /// After the last backup: only namespaces written since are read again.
        #[arg(long)]
        incremental: bool,
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        /// zstd (default), lz4 or none.
        #[arg(long)]
        compression: Option<String>,
        /// Wait until it completes (or fails).
        #[arg(long)]
        wait: bool,
    },
    /// Every backup, newest first.
    List,
    Get {
        id: String,
    },
    /// Re-read every chunk of a backup and check its digest.
    Verify {
        id: String,
    },
    /// Restore a backup into this cluster (every namespace, or --namespace ones).
    Restore {
        id: String,
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        #[arg(long)]
        wait: bool,
    },
    RestoreStatus {
        id: String,
    },
    Delete {
        id: String,
    },
    /// Show the schedule, or change it with --set '{"enabled":true,"cron":"@daily"}'.
    Schedule {
        #[arg(long)]
        set: Option<String>,
    },
}

fn backup_row(b: &Value) -> Vec<String> {
    vec![
        s(&b["backup_id"]),
        s(&b["name"]),
        s(&b["backup_type"]),
        s(&b["status"]),
        s(&b["namespaces_total"]),
        s(&b["vector_count"]),
        s(&b["size_bytes"]),
        s(&b["error"]),
    ]
}

/// The schedule fields `--set` may change (the server refuses others; the typed call would drop
/// them silently).
const SCHEDULE_FIELDS: [&str; 8] =
    ["enabled", "backup_type", "cron", "retention_days", "max_backups", "encrypt", "namespaces", "compression"];

const BACKUP_HEADERS: [&str; 8] = ["BACKUP ID", "NAME", "TYPE", "STATUS", "NAMESPACES", "RECORDS", "BYTES", "ERROR"];

pub async fn backup(conn: Conn, cmd: BackupCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let mut bc = pb::backups_client::BackupsClient::new(c.channel().await?);
    let wait_done = |v: &Value| v["status"] == "completed" || v["status"] == "failed";
    match cmd {
        BackupCmd::Create { name, incremental, namespaces, compression, wait } => {
            let req = pb::BackupsCreateRequest {
                name,
                backup_type: Some(if incremental { "incremental" } else { "full" }.into()),
                namespaces,
                encrypt: None,
                compression,
            };
            let mut v = c.answer(bc.create(c.req(req)?).await, "loci.v1.BackupsCreateResponse")?["backup"].clone();
            while wait && !wait_done(&v) {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let id = s(&v["backup_id"]);
                v = c.answer(bc.get(c.req(pb::BackupsGetRequest { id })?).await, "loci.v1.BackupInfo")?;
            }
            c.print(&v, |v| table(&BACKUP_HEADERS, &[backup_row(v)]));
            if v["status"] == "failed" {
                anyhow::bail!("backup failed: {}", s(&v["error"]));
            }
        }
        BackupCmd::List => {
            let v = c.answer(bc.list(c.req(pb::BackupsListRequest {})?).await, "loci.v1.BackupsListResponse")?;
            c.print(&v, |v| {
                let rows: Vec<Vec<String>> =
                    v["backups"].as_array().map(|a| a.iter().map(backup_row).collect()).unwrap_or_default();
                table(&BACKUP_HEADERS, &rows)
            });
        }
        BackupCmd::Get { id } => {
            let v = c.answer(bc.get(c.req(pb::BackupsGetRequest { id })?).await, "loci.v1.BackupInfo")?;
            c.print(&v, |v| table(&BACKUP_HEADERS, &[backup_row(v)]));
        }
        BackupCmd::Verify { id } => {
            let v =
                c.answer(bc.verify(c.req(pb::BackupsVerifyRequest { id })?).await, "loci.v1.BackupsVerifyResponse")?;
            c.print(&v, |v| {
                format!(
                    "backup {}: {} ({} chunks, {} bytes checked){}\n",
                    s(&v["backup_id"]),
                    if v["ok"] == true { "OK" } else { "DAMAGED" },
                    s(&v["chunks_checked"]),
                    s(&v["bytes_checked"]),
                    v["faults"]
                        .as_array()
                        .filter(|f| !f.is_empty())
                        .map(|f| format!("\n{}", f.iter().map(s).collect::<Vec<_>>().join("\n")))
                        .unwrap_or_default()
                )
            });
            if v["ok"] != true {
                anyhow::bail!("backup {} failed verification", s(&v["backup_id"]));
            }
        }
        BackupCmd::Restore { id, namespaces, wait } => {
            let req = pb::BackupsRestoreRequest { backup_id: id, target_namespaces: namespaces, overwrite: None };
            let mut v = c.answer(bc.restore(c.req(req)?).await, "loci.v1.RestoreInfo")?;
            while wait && !wait_done(&v) {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let id = s(&v["restore_id"]);
                v = c.answer(
                    bc.restore_status(c.req(pb::BackupsRestoreStatusRequest { id })?).await,
                    "loci.v1.RestoreInfo",
                )?;
            }
            print_restore(&c, &v);
            if v["status"] == "failed" {
                anyhow::bail!("restore failed: {}", s(&v["error"]));
            }
        }
        BackupCmd::RestoreStatus { id } => {
            let req = c.req(pb::BackupsRestoreStatusRequest { id })?;
            let v = c.answer(bc.restore_status(req).await, "loci.v1.RestoreInfo")?;
            print_restore(&c, &v);
        }
        BackupCmd::Delete { id } => {
            let v =
                c.answer(bc.delete(c.req(pb::BackupsDeleteRequest { id })?).await, "loci.v1.BackupsDeleteResponse")?;
            c.print(&v, |v| format!("deleted {} ({} chunks removed)\n", s(&v["backup_id"]), s(&v["chunks_removed"])));
        }
        BackupCmd::Schedule { set } => {
            let v = match set {
                None => {
                    c.answer(bc.get_schedule(c.req(pb::BackupsGetScheduleRequest {})?).await, "loci.v1.BackupSchedule")?
                }
                Some(json) => {
                    let want: Value =
                        serde_json::from_str(&json).map_err(|e| anyhow::anyhow!("--set is not JSON: {e}"))?;
                    let obj = want.as_object().ok_or_else(|| anyhow::anyhow!("--set must be a JSON object"))?;
                    if let Some(k) = obj.keys().find(|k| !SCHEDULE_FIELDS.contains(&k.as_str())) {
                        anyhow::bail!("--set: unknown schedule field '{k}' (known: {})", SCHEDULE_FIELDS.join(", "));
                    }
                    let req: pb::BackupsSetScheduleRequest =
                        loci_api::grpc::transcode::from_json(want, "loci.v1.BackupsSetScheduleRequest")
                            .map_err(|st| anyhow::anyhow!("--set: {}", st.message()))?;
                    c.answer(bc.set_schedule(c.req(req)?).await, "loci.v1.BackupSchedule")?
                }
            };
            c.print(&v, |v| format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()));
        }
    }
    Ok(())
}

fn print_restore(c: &Client, v: &Value) {
    c.print(v, |v| {
        let rows: Vec<Vec<String>> = v["details"]
            .as_array()
            .map(|a| {
                a.iter().map(|d| vec![s(&d["namespace"]), s(&d["status"]), s(&d["records"]), s(&d["error"])]).collect()
            })
            .unwrap_or_default();
        format!(
            "restore {} of {}: {} ({}%)\n{}",
            s(&v["restore_id"]),
            s(&v["backup_id"]),
            s(&v["status"]),
            s(&v["progress_percent"]),
            table(&["NAMESPACE", "STATUS", "RECORDS", "ERROR"], &rows)
        )
    });
}
