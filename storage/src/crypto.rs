//! Envelope encryption (DESIGN §5).
//!
//! passphrase or 64-hex key --(Argon2id once at boot, salt in the catalogue)--> root
//! root --(HKDF "loci/kek/v{n}")--> KEK v{n}
//! per-namespace random DEK, stored only wrapped under the KEK (AAD = namespace id | DEK version)
//! records: AES-256-GCM, random 96-bit nonce, AAD = namespace id | record id | DEK version | kind.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Result, StorageError};

/// Format byte of every sealed value, so the layout can evolve.
const SEALED_FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const KEY_CHECK_PLAINTEXT: &[u8] = b"loci key check v1";

/// Fill `buf` with OS randomness.
pub fn random_bytes(buf: &mut [u8]) {
    // getrandom only fails when the OS has no entropy source at all; nothing sensible can run then.
    getrandom::fill(buf).expect("operating system randomness unavailable");
}

/// A 256-bit secret that wipes itself when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn random() -> Self {
        let mut k = [0u8; 32];
        random_bytes(&mut k);
        SecretKey(k)
    }
    pub fn from_bytes(b: [u8; 32]) -> Self {
        SecretKey(b)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    fn cipher(&self) -> Aes256Gcm {
        // A 32-byte slice is always a valid AES-256 key.
        Aes256Gcm::new_from_slice(&self.0).expect("32-byte key")
    }
    /// HKDF-SHA256 sub-key.
    pub fn derive(&self, info: &[u8]) -> SecretKey {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut out = [0u8; 32];
        hk.expand(info, &mut out).expect("32 bytes is a valid HKDF length");
        SecretKey(out)
    }
}

impl SecretKey {
    /// AES-256-GCM under this key with a random nonce: `[nonce 12][ciphertext+tag]`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_raw(self, aad, plaintext)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        open_raw(self, aad, sealed)
    }

    /// Deterministic AES-256-GCM (a synthetic IV): the nonce is an HMAC of the AAD and the
    /// plaintext under a sub-key, so equal plaintexts seal to equal ciphertexts (content-
    /// addressed backup chunks are stored once) and two different plaintexts share a nonce only
    /// if HMAC-SHA256 collides in 96 bits. Reveals only whether two sealed values are equal.
    /// `[nonce 12][ciphertext+tag]`, opened by [`SecretKey::open_deterministic`].
    pub fn seal_deterministic(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with_nonce(self, self.synthetic_nonce(aad, plaintext), aad, plaintext)
    }

    /// Open what [`SecretKey::seal_deterministic`] sealed, checking the nonce is the one the
    /// plaintext implies.
    pub fn open_deterministic(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let pt = open_raw(self, aad, sealed)?;
        if sealed[..NONCE_LEN] != self.synthetic_nonce(aad, &pt) {
            return Err(StorageError::Decrypt("synthetic nonce mismatch"));
        }
        Ok(pt)
    }

    fn synthetic_nonce(&self, aad: &[u8], plaintext: &[u8]) -> [u8; NONCE_LEN] {
        let sub = self.derive(b"loci/siv");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(sub.as_bytes()).expect("any key length");
        mac.update(&(aad.len() as u64).to_be_bytes());
        mac.update(aad);
        mac.update(plaintext);
        let tag = mac.finalize().into_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&tag[..NONCE_LEN]);
        nonce
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// How the root key is derived from the configured secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Kdf {
    /// A 64-hex key already has full entropy: HKDF only.
    RawHex,
    /// A passphrase: Argon2id with these costs.
    Argon2id { m_kib: u32, t: u32, p: u32 },
}

/// Public parameters of the key hierarchy, kept in the catalogue.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncryptionParams {
    pub salt: [u8; 16],
    pub kdf: Kdf,
    pub kek_version: u32,
    /// A known plaintext sealed under the KEK: proves at boot that the configured key is right.
    pub verifier: Vec<u8>,
}

/// The configured secret: a passphrase (≥ 8 chars) or 64 hex characters.
#[derive(Clone)]
pub struct MasterSecret {
    material: Zeroizing<Vec<u8>>,
    raw_hex: bool,
}

impl MasterSecret {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes = hex::decode(s).map_err(|e| StorageError::Key(e.to_string()))?;
            return Ok(MasterSecret { material: Zeroizing::new(bytes), raw_hex: true });
        }
        if s.chars().count() < 8 {
            return Err(StorageError::Key(
                "the encryption key must be a passphrase of at least 8 characters or 64 hex characters".into(),
            ));
        }
        Ok(MasterSecret { material: Zeroizing::new(s.as_bytes().to_vec()), raw_hex: false })
    }

    /// Generate a fresh 64-hex key (used when none is configured).
    pub fn generate_hex() -> String {
        let mut k = Zeroizing::new([0u8; 32]);
        random_bytes(&mut k[..]);
        hex::encode(&k[..])
    }

    fn default_kdf(&self) -> Kdf {
        if self.raw_hex { Kdf::RawHex } else { Kdf::Argon2id { m_kib: 19 * 1024, t: 2, p: 1 } }
    }

    fn root(&self, salt: &[u8; 16], kdf: &Kdf) -> Result<SecretKey> {
        match kdf {
            Kdf::RawHex => {
                let hk = Hkdf::<Sha256>::new(Some(salt), &self.material);
                let mut out = [0u8; 32];
                hk.expand(b"loci/root", &mut out).map_err(|e| StorageError::Key(e.to_string()))?;
                Ok(SecretKey(out))
            }
            Kdf::Argon2id { m_kib, t, p } => {
                let params =
                    argon2::Params::new(*m_kib, *t, *p, Some(32)).map_err(|e| StorageError::Key(e.to_string()))?;
                let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
                let mut out = [0u8; 32];
                a.hash_password_into(&self.material, salt, &mut out).map_err(|e| StorageError::Key(e.to_string()))?;
                Ok(SecretKey(out))
            }
        }
    }

    /// The KDF a new salt of this secret is used with (Argon2id for a passphrase).
    pub fn kdf(&self) -> Kdf {
        self.default_kdf()
    }

    /// The key of a backup store, from this secret and the store's own salt: independent of
    /// any cluster's salt and KEK version, so a backup restores into any cluster given the
    /// secret it was taken with.
    pub fn backup_key(&self, salt: &[u8; 16], kdf: &Kdf) -> Result<SecretKey> {
        Ok(self.root(salt, kdf)?.derive(b"loci/backup/v1"))
    }

    /// First start of a cluster: choose a salt and build the public parameters.
    pub fn establish(&self) -> Result<(Keyring, EncryptionParams)> {
        let mut salt = [0u8; 16];
        random_bytes(&mut salt);
        let kdf = self.default_kdf();
        let root = self.root(&salt, &kdf)?;
        let kek = Keyring::kek_from_root(&root, 1);
        let verifier = seal_raw(&kek, &key_check_aad(1), KEY_CHECK_PLAINTEXT);
        let params = EncryptionParams { salt, kdf, kek_version: 1, verifier };
        Ok((Keyring { kek, kek_version: 1 }, params))
    }

    /// Later starts: derive from the catalogue's parameters and prove the key is the right one.
    pub fn unlock(&self, params: &EncryptionParams) -> Result<Keyring> {
        let root = self.root(&params.salt, &params.kdf)?;
        let kek = Keyring::kek_from_root(&root, params.kek_version);
        match open_raw(&kek, &key_check_aad(params.kek_version), &params.verifier) {
            Ok(pt) if pt == KEY_CHECK_PLAINTEXT => Ok(Keyring { kek, kek_version: params.kek_version }),
            _ => Err(StorageError::Key(
                "the configured encryption key does not match the one this cluster's data was encrypted with".into(),
            )),
        }
    }

    /// Rotation: new salt, new KEK version.
    pub fn establish_next(&self, previous_version: u32) -> Result<(Keyring, EncryptionParams)> {
        let mut salt = [0u8; 16];
        random_bytes(&mut salt);
        let kdf = self.default_kdf();
        let root = self.root(&salt, &kdf)?;
        let version = previous_version + 1;
        let kek = Keyring::kek_from_root(&root, version);
        let verifier = seal_raw(&kek, &key_check_aad(version), KEY_CHECK_PLAINTEXT);
        Ok((Keyring { kek, kek_version: version }, EncryptionParams { salt, kdf, kek_version: version, verifier }))
    }
}

fn key_check_aad(version: u32) -> Vec<u8> {
    let mut aad = b"loci/keycheck/".to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// A data-encryption key as the catalogue stores it: only wrapped.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_version: u32,
    pub dek_version: u32,
    pub sealed: Vec<u8>,
}

/// The node's unlocked key-encryption key.
#[derive(Clone)]
pub struct Keyring {
    kek: SecretKey,
    kek_version: u32,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring(kek v{})", self.kek_version)
    }
}

impl Keyring {
    fn kek_from_root(root: &SecretKey, version: u32) -> SecretKey {
        root.derive(format!("loci/kek/v{version}").as_bytes())
    }

    pub fn kek_version(&self) -> u32 {
        self.kek_version
    }

    /// Sub-key for node-to-node secrets derived from the same master (e.g. gossip).
    pub fn derive(&self, info: &str) -> SecretKey {
        self.kek.derive(info.as_bytes())
    }

    fn wrap_aad(ns_id: u64, dek_version: u32) -> Vec<u8> {
        let mut aad = b"loci/dek/".to_vec();
        aad.extend_from_slice(&ns_id.to_be_bytes());
        aad.extend_from_slice(&dek_version.to_be_bytes());
        aad
    }

    /// Create a fresh DEK for a namespace and return it wrapped.
    pub fn new_wrapped_dek(&self, ns_id: u64, dek_version: u32) -> WrappedKey {
        let dek = SecretKey::random();
        self.wrap(ns_id, dek_version, &dek)
    }

    pub fn wrap(&self, ns_id: u64, dek_version: u32, dek: &SecretKey) -> WrappedKey {
        let sealed = seal_raw(&self.kek, &Self::wrap_aad(ns_id, dek_version), dek.as_bytes());
        WrappedKey { kek_version: self.kek_version, dek_version, sealed }
    }

    pub fn unwrap(&self, ns_id: u64, wrapped: &WrappedKey) -> Result<DataKey> {
        if wrapped.kek_version != self.kek_version {
            return Err(StorageError::Key(format!(
                "data key is wrapped under KEK v{} but this node holds v{}",
                wrapped.kek_version, self.kek_version
            )));
        }
        let pt = Zeroizing::new(open_raw(&self.kek, &Self::wrap_aad(ns_id, wrapped.dek_version), &wrapped.sealed)?);
        let bytes: [u8; 32] = pt.as_slice().try_into().map_err(|_| StorageError::Decrypt("wrapped key length"))?;
        Ok(DataKey::new(ns_id, wrapped.dek_version, SecretKey(bytes)))
    }
}

/// Kinds of sealed records; part of the AAD so a ciphertext can't be reused as another kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    Memory = b'm',
    Vector = b'v',
    Session = b's',
    Replication = b'r',
    /// A memory id as the text index stores it.
    TextId = b't',
    Link = b'l',
    Trash = b'x',
    Feedback = b'f',
}

/// An unwrapped per-namespace data key, with the blind-index search key derived from it.
#[derive(Clone)]
pub struct DataKey {
    ns_id: u64,
    version: u32,
    key: SecretKey,
    search: SecretKey,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey(ns {} v{})", self.ns_id, self.version)
    }
}

impl DataKey {
    pub fn new(ns_id: u64, version: u32, key: SecretKey) -> Self {
        let search = key.derive(b"loci/search");
        DataKey { ns_id, version, key, search }
    }
    pub fn ns_id(&self) -> u64 {
        self.ns_id
    }
    /// The key material (for re-wrapping under a new KEK).
    pub fn raw(&self) -> &SecretKey {
        &self.key
    }
    pub fn version(&self) -> u32 {
        self.version
    }

    fn aad(&self, kind: RecordKind, id: &[u8], version: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(16 + id.len());
        aad.extend_from_slice(&self.ns_id.to_be_bytes());
        aad.push(kind as u8);
        aad.extend_from_slice(&version.to_be_bytes());
        aad.extend_from_slice(id);
        aad
    }

    /// `[format u8][dek version u32][nonce 12][ciphertext+tag]`
    pub fn seal(&self, kind: RecordKind, id: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let aad = self.aad(kind, id, self.version);
        let mut out = Vec::with_capacity(1 + 4 + NONCE_LEN + plaintext.len() + 16);
        out.push(SEALED_FORMAT_V1);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&seal_raw(&self.key, &aad, plaintext));
        out
    }

    pub fn open(&self, kind: RecordKind, id: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < 5 || sealed[0] != SEALED_FORMAT_V1 {
            return Err(StorageError::Decrypt("unknown sealed format"));
        }
        let version = u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]);
        if version != self.version {
            return Err(StorageError::Decrypt("record sealed under another data key version"));
        }
        open_raw(&self.key, &self.aad(kind, id, version), &sealed[5..])
    }

    /// Blind-index token: a truncated HMAC under the namespace's search key.
    pub fn blind(&self, token: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.search.as_bytes()).expect("any key length");
        mac.update(token.as_bytes());
        let tag = mac.finalize().into_bytes();
        hex::encode(&tag[..12])
    }
}

fn seal_raw(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut nonce);
    seal_with_nonce(key, nonce, aad, plaintext)
}

/// `[nonce 12][ciphertext+tag]`.
fn seal_with_nonce(key: &SecretKey, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let ct = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        .expect("AES-GCM encryption cannot fail for in-memory buffers");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open_raw(key: &SecretKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(StorageError::Decrypt("ciphertext too short"));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    key.cipher()
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| StorageError::Decrypt("authentication tag mismatch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sealing_is_stable_authenticated_and_key_bound() {
        let k = SecretKey::random();
        let a = k.seal_deterministic(b"ns1", b"chunk");
        assert_eq!(a, k.seal_deterministic(b"ns1", b"chunk"));
        assert_ne!(a, k.seal_deterministic(b"ns2", b"chunk"));
        assert_ne!(a, k.seal_deterministic(b"ns1", b"chunk2"));
        assert_eq!(k.open_deterministic(b"ns1", &a).unwrap(), b"chunk");
        assert!(k.open_deterministic(b"ns2", &a).is_err());
        assert!(SecretKey::random().open_deterministic(b"ns1", &a).is_err());
        let mut bad = a.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.open_deterministic(b"ns1", &bad).is_err());
        // A randomly sealed value under the same key opens, but not as a deterministic one.
        let r = k.seal(b"ns1", b"chunk");
        assert_eq!(k.open(b"ns1", &r).unwrap(), b"chunk");
        assert!(k.open_deterministic(b"ns1", &r).is_err());
    }

    #[test]
    fn a_backup_key_depends_on_the_secret_and_the_store_salt_only() {
        let s = MasterSecret::parse(&"cd".repeat(32)).unwrap();
        let salt = [7u8; 16];
        let k1 = s.backup_key(&salt, &Kdf::RawHex).unwrap();
        assert_eq!(k1.as_bytes(), s.backup_key(&salt, &Kdf::RawHex).unwrap().as_bytes());
        assert_ne!(k1.as_bytes(), s.backup_key(&[8u8; 16], &Kdf::RawHex).unwrap().as_bytes());
        let other = MasterSecret::parse(&"ce".repeat(32)).unwrap();
        assert_ne!(k1.as_bytes(), other.backup_key(&salt, &Kdf::RawHex).unwrap().as_bytes());
    }

    #[test]
    fn wrong_key_is_refused_and_right_key_unlocks() {
        let right = MasterSecret::parse(&"ab".repeat(32)).unwrap();
        let (_, params) = right.establish().unwrap();
        assert!(right.unlock(&params).is_ok());
        let wrong = MasterSecret::parse(&"cd".repeat(32)).unwrap();
        assert!(matches!(wrong.unlock(&params), Err(StorageError::Key(_))));
        let pass = MasterSecret::parse("correct horse battery").unwrap();
        let (_, pparams) = pass.establish().unwrap();
        assert!(matches!(pparams.kdf, Kdf::Argon2id { .. }));
        assert!(MasterSecret::parse("correct horse battery").unwrap().unlock(&pparams).is_ok());
        assert!(MasterSecret::parse("wrong horse battery").unwrap().unlock(&pparams).is_err());
    }

    #[test]
    fn short_passphrase_rejected() {
        assert!(MasterSecret::parse("short").is_err());
    }

    #[test]
    fn ciphertexts_are_bound_to_namespace_row_and_kind() {
        let (ring, _) = MasterSecret::parse(&"11".repeat(32)).unwrap().establish().unwrap();
        let a = ring.unwrap(1, &ring.new_wrapped_dek(1, 1)).unwrap();
        let b = ring.unwrap(2, &ring.new_wrapped_dek(2, 1)).unwrap();
        let sealed = a.seal(RecordKind::Memory, b"mem_1", b"secret");
        assert_eq!(a.open(RecordKind::Memory, b"mem_1", &sealed).unwrap(), b"secret");
        assert!(a.open(RecordKind::Memory, b"mem_2", &sealed).is_err(), "moved to another row");
        assert!(a.open(RecordKind::Vector, b"mem_1", &sealed).is_err(), "reused as another kind");
        assert!(b.open(RecordKind::Memory, b"mem_1", &sealed).is_err(), "moved to another tenant");
        // A wrapped key cannot be unwrapped as another namespace's key.
        let wrapped = ring.new_wrapped_dek(1, 1);
        assert!(ring.unwrap(2, &wrapped).is_err());
    }

    #[test]
    fn blind_tokens_differ_per_namespace() {
        let (ring, _) = MasterSecret::parse(&"22".repeat(32)).unwrap().establish().unwrap();
        let a = ring.unwrap(1, &ring.new_wrapped_dek(1, 1)).unwrap();
        let b = ring.unwrap(2, &ring.new_wrapped_dek(2, 1)).unwrap();
        assert_eq!(a.blind("coffee"), a.blind("coffee"));
        assert_ne!(a.blind("coffee"), b.blind("coffee"));
        assert!(!a.blind("coffee").contains("coffee"));
    }
}
