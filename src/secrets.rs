//! Secrets the service owns: the admin and ingest bearer tokens, and the key that
//! encrypts integration secrets at rest. Configured values win; otherwise each is
//! generated at first start into the data directory with owner-only permissions and
//! read from there afterwards. Token values are never logged, only file paths.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Settings;

pub const ADMIN_TOKEN_FILE: &str = "admin-token";
pub const INGEST_TOKEN_FILE: &str = "ingest-token";
pub const ENCRYPTION_KEY_FILE: &str = "encryption-key";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Everything secret the service needs at run time.
pub struct Secrets {
    pub admin_tokens: TokenSet,
    pub ingest_tokens: TokenSet,
    pub cipher: SecretCipher,
}

impl Secrets {
    /// Resolves the configured secrets, generating the missing ones into the data
    /// directory (created owner-only when absent).
    pub fn resolve(settings: &Settings) -> Result<Self, SecretsError> {
        let dir = &settings.server.data_dir;
        ensure_private_dir(dir)?;
        let admin = tokens_or_file(
            &settings.auth.admin_tokens,
            &dir.join(ADMIN_TOKEN_FILE),
            "admin",
        )?;
        let ingest = tokens_or_file(
            &settings.auth.ingest_tokens,
            &dir.join(INGEST_TOKEN_FILE),
            "ingest",
        )?;
        let key = if settings.auth.encryption_key.expose_secret().is_empty() {
            let path = dir.join(ENCRYPTION_KEY_FILE);
            let key = read_or_generate(&path, || STANDARD.encode(random_bytes()))?;
            if key.generated {
                tracing::warn!(path = %path.display(), "generated the encryption key for secrets at rest; back it up with the database, they are useless without each other");
            }
            key.value
        } else {
            settings.auth.encryption_key.clone()
        };
        let cipher = SecretCipher::from_base64(&key).map_err(|why| {
            SecretsError::Invalid(format!("invalid configuration: auth.encryption_key: {why}"))
        })?;
        Ok(Self {
            admin_tokens: admin,
            ingest_tokens: ingest,
            cipher,
        })
    }
}

/// Creates `dir` (and its parents) if needed; a directory the service creates is
/// readable by its owner only.
pub fn ensure_private_dir(dir: &Path) -> Result<(), SecretsError> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
    }
    Ok(())
}

fn tokens_or_file(
    configured: &[SecretString],
    path: &Path,
    kind: &str,
) -> Result<TokenSet, SecretsError> {
    let configured: Vec<SecretString> = configured
        .iter()
        .filter(|t| !t.expose_secret().trim().is_empty())
        .cloned()
        .collect();
    if !configured.is_empty() {
        return Ok(TokenSet::new(&configured));
    }
    let token = read_or_generate(path, || URL_SAFE_NO_PAD.encode(random_bytes()))?;
    if token.generated {
        tracing::warn!(path = %path.display(), kind, "no {kind} token configured; generated one (read it from the file)");
    } else {
        tracing::info!(path = %path.display(), kind, "using the {kind} token stored in the data directory");
    }
    Ok(TokenSet::new(&[token.value]))
}

struct Stored {
    value: SecretString,
    generated: bool,
}

/// Reads a one-line secret file, or creates it (mode 0600, never overwriting a file
/// another process created meanwhile) with a freshly generated value.
fn read_or_generate(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> Result<Stored, SecretsError> {
    if let Some(value) = read_existing(path)? {
        return Ok(Stored {
            value,
            generated: false,
        });
    }
    let value = generate();
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        // Another process created it between our read and our create: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let value = read_existing(path)?.ok_or_else(|| io_err(path)(e))?;
            return Ok(Stored {
                value,
                generated: false,
            });
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    file.write_all(format!("{value}\n").as_bytes())
        .map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(Stored {
        value: SecretString::from(value),
        generated: true,
    })
}

fn read_existing(path: &Path) -> Result<Option<SecretString>, SecretsError> {
    let content = match fs::read_to_string(path) {
        Ok(content) => content,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let value = content.trim();
    if value.is_empty() {
        return Err(SecretsError::Invalid(format!(
            "{} is empty; delete it to have a new secret generated",
            path.display()
        )));
    }
    let mode = fs::metadata(path)
        .map_err(io_err(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "secret file is readable by group or others; chmod 600 it");
    }
    Ok(Some(SecretString::from(value)))
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    bytes
}

/// Bearer tokens, held as SHA-256 digests and compared in constant time, so neither the
/// token nor its length leaks through timing.
#[derive(Clone)]
pub struct TokenSet {
    digests: Vec<[u8; 32]>,
}

impl TokenSet {
    pub fn new(tokens: &[SecretString]) -> Self {
        Self {
            digests: tokens.iter().map(|t| digest(t.expose_secret())).collect(),
        }
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The index of the matching token (used to name the caller in audit lines), if any.
    pub fn verify(&self, presented: &str) -> Option<usize> {
        let presented = digest(presented);
        let mut found = None;
        for (i, d) in self.digests.iter().enumerate() {
            if bool::from(d.ct_eq(&presented)) && found.is_none() {
                found = Some(i);
            }
        }
        found
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// A new bearer token for a source (its write key): `prefix` and 32 random bytes,
/// base64url. Shown once; only its [`token_digest`] is kept.
pub fn new_token(prefix: &str) -> SecretString {
    SecretString::from(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes())
    ))
}

/// The SHA-256 of a token: how a source's token is stored and looked up. (A lookup by
/// digest reveals nothing usable through timing: finding a token from its digest is a
/// preimage search.)
pub fn token_digest(token: &str) -> [u8; 32] {
    digest(token)
}

/// XChaCha20-Poly1305 under the service's key. Each ciphertext is
/// `version(1) || nonce(24) || sealed`, bound to an associated-data string (the owning
/// row's id) so a ciphertext copied to another row does not decrypt.
#[derive(Clone)]
pub struct SecretCipher {
    aead: XChaCha20Poly1305,
}

const CIPHER_VERSION: u8 = 1;

impl SecretCipher {
    pub fn from_base64(key: &SecretString) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| "must be base64".to_owned())?;
        if bytes.len() != 32 {
            return Err(format!(
                "must be 32 bytes once decoded, not {}",
                bytes.len()
            ));
        }
        let aead =
            XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| "must be 32 bytes".to_owned())?;
        Ok(Self { aead })
    }

    pub fn encrypt(&self, plaintext: &[u8], associated: &str) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::fill(&mut nonce);
        let sealed = self
            .aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: associated.as_bytes(),
                },
            )
            .expect("encryption into a Vec cannot fail");
        let mut out = Vec::with_capacity(1 + nonce.len() + sealed.len());
        out.push(CIPHER_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, ciphertext: &[u8], associated: &str) -> Result<Vec<u8>, String> {
        match ciphertext {
            [CIPHER_VERSION, rest @ ..] if rest.len() > 24 => {
                let (nonce, sealed) = rest.split_at(24);
                self.aead
                    .decrypt(
                        &XNonce::try_from(nonce).map_err(|_| "malformed nonce".to_owned())?,
                        Payload {
                            msg: sealed,
                            aad: associated.as_bytes(),
                        },
                    )
                    .map_err(|_| "secret does not decrypt under the configured key (was the encryption key changed?)".to_owned())
            }
            _ => Err("unknown secret encoding".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> SecretCipher {
        SecretCipher::from_base64(&SecretString::from(STANDARD.encode([7u8; 32]))).unwrap()
    }

    #[test]
    fn ciphertext_round_trips_and_hides_the_plaintext() {
        let c = cipher();
        let sealed = c.encrypt(b"sk-secret-value", "int_1");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(c.decrypt(&sealed, "int_1").unwrap(), b"sk-secret-value");
    }

    #[test]
    fn ciphertext_is_bound_to_its_row() {
        let c = cipher();
        let sealed = c.encrypt(b"sk-secret-value", "int_1");
        assert!(c.decrypt(&sealed, "int_2").is_err());
    }

    #[test]
    fn encryption_key_must_be_32_bytes_of_base64() {
        assert!(SecretCipher::from_base64(&SecretString::from("short")).is_err());
        assert!(
            SecretCipher::from_base64(&SecretString::from(STANDARD.encode([1u8; 16]))).is_err()
        );
    }

    #[test]
    fn token_set_accepts_only_configured_tokens() {
        let set = TokenSet::new(&[SecretString::from("alpha"), SecretString::from("beta")]);
        assert_eq!(set.verify("beta"), Some(1));
        assert_eq!(set.verify("alpha"), Some(0));
        assert_eq!(set.verify("alph"), None);
        assert_eq!(set.verify(""), None);
    }

    #[test]
    fn generated_secret_files_are_owner_only_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = read_or_generate(&path, || "generated".into()).unwrap();
        assert!(first.generated);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = read_or_generate(&path, || "other".into()).unwrap();
        assert!(!second.generated);
        assert_eq!(second.value.expose_secret(), "generated");
    }
}
