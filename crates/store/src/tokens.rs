//! Bearer tokens for `meterline serve`. A token is shown once, when created; the database
//! keeps only its SHA-256, so a copied database file grants no access.

use crate::db::{OptionalExtension, params};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Store;
use crate::billing::format_ts;
use crate::{Error, Result};

/// What `token list` shows: never the token itself.
#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// An active token as the server keeps it in memory: its name and hash.
#[derive(Debug, Clone)]
pub struct ActiveToken {
    pub name: String,
    pub sha256: [u8; 32],
}

/// The SHA-256 of a presented token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: "mlt_" and 64 hex digits (256 bits from the OS generator).
fn new_token() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    let c = uuid::Uuid::new_v4();
    // Two v4 UUIDs carry 244 random bits; a third fills the 256 displayed bits with randomness
    // (hashing mixes the fixed version bits away).
    let mut h = Sha256::new();
    h.update(a.as_bytes());
    h.update(b.as_bytes());
    h.update(c.as_bytes());
    format!("mlt_{}", hex::encode(h.finalize()))
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "token name {name:?} is not valid: use 1 to 64 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// API tokens; serves `meterline token` and serve's bearer-token check.
impl Store {
    /// Create a token named `name` and return it; only its hash is stored.
    pub fn create_token(&mut self, name: &str, now: DateTime<Utc>) -> Result<String> {
        check_name(name)?;
        let token = new_token();
        let inserted = self.conn.execute(
            "INSERT INTO api_tokens (name, token_sha256, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
            params![name, hex::encode(token_hash(&token)), format_ts(now)],
        )?;
        if inserted == 0 {
            return Err(Error::InvalidInput(format!(
                "a token named \"{name}\" already exists (names stay taken after revoke); pick another name"
            )));
        }
        Ok(token)
    }

    /// Every token's name and dates; never the token itself.
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let mut stmt = self.conn.prepare(
            "SELECT name, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TokenInfo {
                name: r.get(0)?,
                created_at: r.get(1)?,
                last_used_at: r.get(2)?,
                revoked_at: r.get(3)?,
            })
        })?;
        rows.collect::<crate::Result<_>>()
    }

    /// Revoke a token; false if it was already revoked.
    pub fn revoke_token(&mut self, name: &str, now: DateTime<Utc>) -> Result<bool> {
        let revoked: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT revoked_at FROM api_tokens WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        match revoked {
            None => Err(Error::InvalidInput(format!("no token named \"{name}\""))),
            Some(Some(_)) => Ok(false),
            Some(None) => {
                self.conn.execute(
                    "UPDATE api_tokens SET revoked_at = ?2 WHERE name = ?1",
                    params![name, format_ts(now)],
                )?;
                Ok(true)
            }
        }
    }

    /// The tokens that are not revoked, for the server's in-memory check.
    pub fn active_tokens(&self) -> Result<Vec<ActiveToken>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, token_sha256 FROM api_tokens WHERE revoked_at IS NULL")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, hash) = row?;
            let mut sha256 = [0u8; 32];
            if hex::decode_to_slice(&hash, &mut sha256).is_ok() {
                out.push(ActiveToken { name, sha256 });
            }
        }
        Ok(out)
    }

    /// Mark tokens as used at `now` (the server batches these).
    pub fn touch_tokens(&mut self, names: &[String], now: DateTime<Utc>) -> Result<()> {
        let tx = self.conn.transaction()?;
        for name in names {
            tx.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE name = ?1",
                params![name, format_ts(now)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}
