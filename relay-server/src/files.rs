//! Small files the relay keeps in its data dir: the generated agent token and the TLS key.

use std::io::Write;
use std::path::Path;

use protocol::Secret;

/// Writes a file only its owner can read, since it holds a secret.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Reads the agent token from `path`, or makes one (32 random bytes, hex) and keeps it there, so
/// that agents set up once keep working across restarts. The flag says whether it was made now.
pub fn load_or_create_token(path: &Path) -> std::io::Result<(Secret, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok((Secret::new(text.trim()), false)),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_private(path, format!("{token}\n").as_bytes())?;
    Ok((Secret::new(token), true))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh directory under the system temp dir, unique per call.
    pub(crate) fn temp_dir(label: &str) -> PathBuf {
        let unique: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("relay-server-{label}-{unique:x}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn token_is_generated_once_and_kept_private() {
        let dir = temp_dir("token");
        let path = dir.join("agent-token");
        let (first, made) = load_or_create_token(&path).expect("token");
        assert!(made);
        assert_eq!(first.expose().len(), 64);
        let (again, made) = load_or_create_token(&path).expect("token");
        assert!(!made);
        assert_eq!(first, again);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
