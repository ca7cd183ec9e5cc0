//! The FUSE drive with real tools on a real mount over a devnet of real node processes: cp,
//! rsync, tar, git, an editor's write-then-rename and sqlite3, checked byte for byte after a
//! remount; two writers at once, a reader beside a writer, a `kill -9` of the mount with a file
//! half written, and nodes killed during a copy; fsx for 10,000 random operations.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use blackbox_tests::*;

/// A running `blackbox mount`, unmounted on drop.
struct Mount {
    child: Child,
    point: PathBuf,
}

impl Mount {
    fn start(net: &Devnet, point: &Path) -> Mount {
        std::fs::create_dir_all(point).unwrap();
        let mut child = Command::new(bin())
            .arg("--config")
            .arg(net.config())
            .arg("mount")
            .arg(point)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mount");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("mount did not start");
        assert!(line.starts_with("mounted"), "{line}");
        Mount { child, point: point.to_path_buf() }
    }

    /// Stops the mount as a user would (SIGTERM) and checks it is gone.
    fn stop(mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "mount exited with {status}");
        assert!(!mounted(&self.point), "still mounted after SIGTERM");
    }

    /// `kill -9` of the mount process, then the stale mount is detached.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.point).status();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if mounted(&self.point) {
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
    }
}

fn mounted(point: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let p = point.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&p))
}

/// Runs a bash script in `dir`; fails the test with its output if it fails.
fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("bash").args(["-euo", "pipefail", "-c", script]).current_dir(dir).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "script failed:\n{script}\n--- output:\n{text}");
    text
}

/// A small git repository with a few commits and a tree of files.
fn make_repo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    sh(
        dir,
        "git init -q -b main . && git config user.email t@example.com && git config user.name t
         mkdir -p src/deep && for i in $(seq 20); do echo line $i > src/f$i.txt; done
         head -c 200000 /dev/urandom > src/deep/blob.bin
         git add -A && git commit -qm one && echo more >> src/f1.txt && git commit -qam two",
    );
}

#[test]
fn real_tools_on_a_mount_survive_a_remount() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 6, &[]);
    let (point, work) = (tmp.path().join("mnt"), tmp.path().join("work"));
    make_repo(&work.join("repo"));
    random_file(&work.join("big.bin"), 5_000_000, 7);
    let m = Mount::start(&net, &point);
    let script = format!(
        "W={work}
         cp $W/big.bin big.bin && cmp $W/big.bin big.bin
         mkdir -p tree && cp -r $W/repo/src tree/copied
         rsync -a $W/repo/src/ synced/
         tar -C $W/repo -cf archive.tar src && mkdir untarred && tar -C untarred -xf archive.tar
         git clone -q $W/repo clone && (cd clone && test -z \"$(git status --porcelain)\" && git log --oneline | wc -l | grep -qx 2)
         echo first > notes.txt && echo second > .notes.txt.tmp && mv .notes.txt.tmp notes.txt && grep -qx second notes.txt
         sqlite3 db.sqlite 'create table t(a integer, b text)'
         for i in $(seq 10); do
           (echo 'begin;'; for j in $(seq 100); do echo \"insert into t values($i$j, 'row');\"; done; echo 'commit;') | sqlite3 db.sqlite
         done
         test \"$(sqlite3 db.sqlite 'select count(*) from t')\" = 1000
         chmod 600 notes.txt && test \"$(stat -c %a notes.txt)\" = 600
         touch -d '2001-02-03 04:05:06' notes.txt && test \"$(stat -c %Y notes.txt)\" = \"$(date -d '2001-02-03 04:05:06' +%s)\"
         ln -s big.bin link && test \"$(readlink link)\" = big.bin
         mkdir full && touch full/x && ! rmdir full 2>/dev/null && rm full/x && rmdir full
         find . -type f | sort | xargs sha256sum > $W/sums",
        work = work.display()
    );
    sh(&point, &script);
    m.stop();
    let m = Mount::start(&net, &point);
    let check = format!(
        "sha256sum --quiet -c {w}/sums && test \"$(sqlite3 db.sqlite 'select count(*) from t')\" = 1000
         test \"$(stat -c %a notes.txt)\" = 600 && (cd clone && test -z \"$(git status --porcelain)\")",
        w = work.display()
    );
    sh(&point, &check);
    // The namespace holds what the drive wrote.
    assert!(stdout(&net.run(&["ls", "/tree/copied"])).contains("f20.txt"));
    m.stop();
    net.stop();
}

#[test]
fn writers_readers_a_killed_mount_and_killed_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 10, &[]);
    let (point, work) = (tmp.path().join("mnt"), tmp.path().join("work"));
    std::fs::create_dir_all(&work).unwrap();
    random_file(&work.join("a.bin"), 3_000_000, 1);
    random_file(&work.join("b.bin"), 3_000_000, 2);
    random_file(&work.join("c.bin"), 24_000_000, 3);
    let m = Mount::start(&net, &point);
    let w = work.display();
    // Two writers in one folder at once; a reader beside a writer of one file.
    sh(
        &point,
        &format!(
            "mkdir shared && (cp {w}/a.bin shared/a.bin &) && cp {w}/b.bin shared/b.bin && wait
             while [ \"$(stat -c %s shared/a.bin 2>/dev/null || echo 0)\" != 3000000 ]; do sleep 0.2; done
             sleep 1; cmp {w}/a.bin shared/a.bin && cmp {w}/b.bin shared/b.bin
             for i in $(seq 20); do echo \"version $i\" > shared/live.txt; done &
             for i in $(seq 20); do cat shared/live.txt > /dev/null 2>&1 || true; done; wait
             grep -qx 'version 20' shared/live.txt"
        ),
    );
    // Nodes killed during a copy: the copy still ends with the right bytes.
    let mut copy = Command::new("cp").arg(work.join("c.bin")).arg(point.join("c.bin")).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    net.kill_node(2);
    net.kill_node(7);
    assert!(copy.wait().unwrap().success());
    sh(&point, &format!("cmp {w}/c.bin c.bin"));
    // A file half written (open, not closed) when the mount is killed is stored at the next mount.
    let mut writer = Command::new("bash")
        .args(["-c", "exec 3>dirty.txt; echo unsaved-but-kept >&3; sleep 30"])
        .current_dir(&point)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    m.kill();
    let _ = writer.kill();
    let _ = writer.wait();
    let m = Mount::start(&net, &point);
    sh(&point, &format!("grep -qx unsaved-but-kept dirty.txt && cmp {w}/c.bin c.bin && cmp {w}/a.bin shared/a.bin"));
    m.stop();
    net.stop();
}

/// A tool `scripts/setup.sh` builds into `.tools/bin`.
fn tool(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let path = root.join(".tools/bin").join(name);
    assert!(path.exists(), "no {}: run ./scripts/setup.sh (it builds {name})", path.display());
    path
}

#[test]
fn fsx_ten_thousand_operations_without_a_miscompare() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 5, &[]);
    let (point, artifacts) = (tmp.path().join("mnt"), tmp.path().join("fsx"));
    std::fs::create_dir_all(&artifacts).unwrap();
    let m = Mount::start(&net, &point);
    let out = Command::new(tool("fsx"))
        .args(["-N", "10000", "-S", "42", "-P"])
        .arg(&artifacts)
        .arg(point.join("fsx.bin"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("A-OK"), "fsx failed:\n{text}");
    m.stop();
    net.stop();
}

/// pjdfstest over the supported operations: every test passes but those `tests/pjdfstest.toml`
/// lists as expected failures, grouped by what the drive deliberately does not keep.
#[test]
fn pjdfstest_passes_for_what_the_drive_keeps() {
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 5, &[]);
    let point = tmp.path().join("mnt");
    let m = Mount::start(&net, &point);
    std::fs::create_dir(point.join("pjd")).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("pjdfstest.toml");
    let out = Command::new(tool("pjdfstest")).arg("-c").arg(&config).arg("-p").arg(point.join("pjd")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = text.lines().rev().find(|l| l.starts_with("Summary:")).unwrap_or_default().to_string();
    assert!(out.status.success() && summary.contains(" 0 failed"), "pjdfstest failed ({summary}):\n{text}");
    assert!(!summary.contains(" 0 passed"), "{summary}");
    m.stop();
    net.stop();
}

/// Names holding `/` (as S3 keys do) are shown as nested folders, and edits in those folders
/// are edits of the full names.
#[test]
fn names_with_slashes_are_nested_folders() {
    use blackbox_client::namespace::{new_entry, DirCap};
    use blackbox_core::dir::Kind;
    use blackbox_core::LiteralCap;
    let tmp = tempfile::tempdir().unwrap();
    let net = Devnet::start(&tmp.path().join("net"), 5, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let session = rt.block_on(blackbox_client::Session::open(&net.config())).unwrap();
    let names = ["photos/2026/a.txt", "photos/2026/b.txt", "photos/c.txt", "top.txt", "docs/"];
    rt.block_on(async {
        let DirCap::Write(w) = session.mkdir("/bucket", true).await.unwrap() else { panic!("read-only") };
        let opts = session.upload_options(&Default::default()).unwrap();
        let entries = |_: Vec<_>| {
            Ok(names
                .iter()
                .map(|n| {
                    Some(new_entry(Kind::File, LiteralCap { data: n.as_bytes().to_vec() }.to_string(), n.len() as u64))
                })
                .collect())
        };
        session.client.dir_update(&w, &names, &opts, entries).await.unwrap();
    });
    let point = tmp.path().join("mnt");
    let m = Mount::start(&net, &point);
    sh(
        &point.join("bucket"),
        "test \"$(ls | tr '\\n' ' ')\" = 'docs photos top.txt '
         test \"$(ls photos | tr '\\n' ' ')\" = '2026 c.txt '
         test \"$(cat photos/2026/a.txt)\" = photos/2026/a.txt && test -d photos/2026
         echo new > photos/2026/new.txt && mv photos/c.txt photos/2026/c.txt
         test \"$(ls photos | tr '\\n' ' ')\" = '2026 '
         ! rmdir photos 2>/dev/null && rmdir docs && rm photos/2026/b.txt
         mkdir photos/2027 && test -d photos/2027",
    );
    let listed = rt.block_on(async {
        let DirCap::Write(w) = session.resolve_dir("/bucket").await.unwrap() else { panic!("read-only") };
        let d = DirCap::Write(w);
        session.list(&d, None, 100).await.unwrap().into_iter().map(|(n, _)| n).collect::<Vec<_>>()
    });
    assert_eq!(listed, ["photos/2026/a.txt", "photos/2026/c.txt", "photos/2026/new.txt", "photos/2027", "top.txt"]);
    m.stop();
    net.stop();
}
