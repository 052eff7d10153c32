//! The data dir: the one place that names every file the relay keeps there, and writes the
//! private ones.
//!
//! | file | what | written by |
//! | --- | --- | --- |
//! | `agent-token` | the generated any-bot agent token (0600) | [`load_or_create_token`] |
//! | `admin-token` | the admin API's token (0600) | [`load_or_create_token`] |
//! | `known-bots` | bots agents have declared under the any-bot token | `tunnel::bots` |
//! | `bot-modes` | the delivery modes agents asked for their bots | `tunnel::bots` |
//! | `store.redb` | stored updates and dead letters | `delivery::store` |
//! | `store.redb.damaged-<unix seconds>` | a store file damaged at start, moved aside (0600) | `delivery::store` |
//! | `tls/self-signed-{cert,key}.pem`, `tls/self-signed-names` | the self-signed certificate, its key (0600) and the names it covers | `tls::self_signed` |
//! | `acme/account.json` | the ACME account's key and URL (0600) | `tls::acme` |
//! | `acme/cert.pem`, `acme/key.pem` | the certificate chain ACME issued and its key (0600) | `tls::acme` |

use std::io::Write;
use std::path::{Path, PathBuf};

use protocol::Secret;

/// The file that holds the generated agent token.
pub(crate) const AGENT_TOKEN_FILE: &str = "agent-token";
/// The file that holds the admin API's token.
pub(crate) const ADMIN_TOKEN_FILE: &str = "admin-token";
/// The file that lists the bots agents have declared under the any-bot token.
pub(crate) const KNOWN_BOTS_FILE: &str = "known-bots";
/// The file that lists the delivery modes agents asked for their bots.
pub(crate) const BOT_MODES_FILE: &str = "bot-modes";
/// The database that holds stored updates and dead letters.
pub(crate) const STORE_FILE: &str = "store.redb";
/// The folder of the self-signed certificate.
const TLS_DIR: &str = "tls";
/// The folder of the ACME account and certificate.
const ACME_DIR: &str = "acme";

/// The paths of a relay's data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data dir at `root` (not created until something is written).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the folder and any missing parents, readable by their owner only, whatever the
    /// umask: the store holds message text and the folder holds tokens. A folder that exists is
    /// left as the operator made it.
    pub fn create(&self) -> std::io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&self.root)
    }

    /// The generated agent token.
    pub fn agent_token(&self) -> PathBuf {
        self.root.join(AGENT_TOKEN_FILE)
    }

    /// The admin API's token.
    pub fn admin_token(&self) -> PathBuf {
        self.root.join(ADMIN_TOKEN_FILE)
    }

    /// The bots agents have declared.
    pub fn known_bots(&self) -> PathBuf {
        self.root.join(KNOWN_BOTS_FILE)
    }

    /// The modes agents asked for.
    pub fn bot_modes(&self) -> PathBuf {
        self.root.join(BOT_MODES_FILE)
    }

    /// The update store.
    pub fn store(&self) -> PathBuf {
        self.root.join(STORE_FILE)
    }

    /// The self-signed certificate (PEM), which agents pass as `--ca`.
    pub fn self_signed_cert(&self) -> PathBuf {
        self.root.join(TLS_DIR).join("self-signed-cert.pem")
    }

    /// The self-signed certificate's private key (PEM, 0600).
    pub fn self_signed_key(&self) -> PathBuf {
        self.root.join(TLS_DIR).join("self-signed-key.pem")
    }

    /// The ACME account's credentials (JSON, 0600).
    pub fn acme_account(&self) -> PathBuf {
        self.root.join(ACME_DIR).join("account.json")
    }

    /// The certificate chain ACME issued (PEM, end entity first).
    pub fn acme_cert(&self) -> PathBuf {
        self.root.join(ACME_DIR).join("cert.pem")
    }

    /// The private key of [`DataDir::acme_cert`] (PEM, 0600).
    pub fn acme_key(&self) -> PathBuf {
        self.root.join(ACME_DIR).join("key.pem")
    }

    /// The names the self-signed certificate was made for, one a line, to tell when to remake it.
    pub fn self_signed_names(&self) -> PathBuf {
        self.root.join(TLS_DIR).join("self-signed-names")
    }
}

/// Writes a file only its owner can read, since it holds a secret.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = open_private(path, false)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Opens `path` for writing (appending, or from empty), creating it readable by its owner only.
pub(crate) fn open_private(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Makes a file that something else created (the store, which redb opens) readable by its owner
/// only, whatever the umask was.
pub(crate) fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Reads the agent token from `path`, or makes one (32 random bytes, hex) and keeps it there, so
/// that agents set up once keep working across restarts. The flag says whether it was made now.
pub(crate) fn load_or_create_token(path: &Path) -> std::io::Result<(Secret, bool)> {
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
#[path = "data_dir_tests.rs"]
mod tests;
