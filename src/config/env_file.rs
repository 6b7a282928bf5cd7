//! The token's env file as a file on disk: which file it really is, and who can read it.
//!
//! warden resolves `token.env_file` once, when the config is loaded: a symlink is followed, but
//! only to a regular file, and from then on warden writes that file and watches it. A link
//! that dangles or points at something else (a directory, a device, a fifo) is a config error,
//! so warden never writes through a link into a place the operator did not mean.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where the env file really is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The file warden reads, writes and watches.
    pub path: PathBuf,
    /// The symlink it was named by, if it was named by one.
    pub link: Option<PathBuf>,
}

/// Follow `path` if it is a symlink, to a regular file only. A path that does not exist yet is
/// fine (warden creates it, 0600). The error says what is wrong and what to do.
pub fn resolve(path: &Path) -> Result<Resolved, String> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Resolved {
                path: path.to_path_buf(),
                link: None,
            })
        }
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    };
    if !meta.file_type().is_symlink() {
        return match kind_if_not_regular(&meta.file_type()) {
            None => Ok(Resolved {
                path: path.to_path_buf(),
                link: None,
            }),
            Some(kind) => Err(format!(
                "{} is {kind}, not a regular file: point env_file at the dotenv file the \
                 programs read",
                path.display()
            )),
        };
    }
    let pointed = std::fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into());
    let real = std::fs::canonicalize(path).map_err(|e| {
        format!(
            "{} is a symlink to {pointed}, which {}: create the file it points at, or point \
             env_file at the real file",
            path.display(),
            if e.kind() == io::ErrorKind::NotFound {
                "does not exist".to_string()
            } else {
                format!("cannot be followed ({e})")
            }
        )
    })?;
    let target =
        std::fs::metadata(&real).map_err(|e| format!("cannot inspect {}: {e}", real.display()))?;
    if let Some(kind) = kind_if_not_regular(&target.file_type()) {
        return Err(format!(
            "{} is a symlink to {}, which is {kind}, not a regular file: warden follows a \
             symlinked env file only to a regular file; point env_file at the real file",
            path.display(),
            real.display()
        ));
    }
    Ok(Resolved {
        path: real,
        link: Some(path.to_path_buf()),
    })
}

fn kind_if_not_regular(t: &std::fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a fifo")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("not a file")
    }
}

/// When the env file at `path` can be read by its group or by everyone, the warning to give
/// (the file holds, or will hold, the broker access token). `None` when it is private or
/// does not exist yet (warden creates it 0600).
pub fn readable_by_others(path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.mode() & 0o777;
    let who = match (mode & 0o004 != 0, mode & 0o040 != 0) {
        (true, _) => "everyone on this machine",
        (false, true) => "its group",
        (false, false) => return None,
    };
    Some(format!(
        "{} (mode {mode:04o}) can be read by {who}, and it holds the broker access token: \
         run `chmod 600 {}` (warden keeps the mode it finds)",
        path.display(),
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_or_regular_file_is_itself() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        assert_eq!(resolve(&p).unwrap().path, p);
        std::fs::write(&p, "A=1\n").unwrap();
        assert_eq!(
            resolve(&p).unwrap(),
            Resolved {
                path: p.clone(),
                link: None
            }
        );
    }

    #[test]
    fn a_symlink_is_followed_to_a_regular_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.env");
        std::fs::write(&real, "A=1\n").unwrap();
        let link = dir.path().join(".env");
        std::os::unix::fs::symlink("real.env", &link).unwrap();
        let r = resolve(&link).unwrap();
        assert_eq!(r.path, real.canonicalize().unwrap());
        assert_eq!(r.link.as_deref(), Some(link.as_path()));

        let dangling = dir.path().join("dangling.env");
        std::os::unix::fs::symlink("nowhere.env", &dangling).unwrap();
        let e = resolve(&dangling).unwrap_err();
        assert!(
            e.contains("nowhere.env") && e.contains("does not exist"),
            "{e}"
        );

        let to_dir = dir.path().join("dir.env");
        std::os::unix::fs::symlink(dir.path(), &to_dir).unwrap();
        let e = resolve(&to_dir).unwrap_err();
        assert!(e.contains("a directory"), "{e}");
        assert!(resolve(dir.path()).unwrap_err().contains("a directory"));
    }

    #[test]
    fn group_or_world_readable_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        assert_eq!(readable_by_others(&p), None);
        std::fs::write(&p, "A=1\n").unwrap();
        for (mode, who) in [
            (0o600, None),
            (0o640, Some("its group")),
            (0o644, Some("everyone")),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let w = readable_by_others(&p);
            assert_eq!(w.is_some(), who.is_some(), "{mode:o}");
            if let (Some(w), Some(who)) = (w, who) {
                assert!(w.contains(who) && w.contains("chmod 600"), "{w}");
            }
        }
    }
}
