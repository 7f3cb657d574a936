//! Report-token issuance by the aggregator: the ledger is the policy, the quota is
//! counted durably in the ledger's database, and issuance is logged per scope and
//! period as counts once the period is over.

use std::sync::Arc;

use confiance::Timestamp;
use confiance::token::voprf::PublicKey;
use confiance::token::{TokenPeriod, TokenRequest, TokenResponse, TokenScope};
use curve25519_dalek::Scalar;
use rusqlite::{Connection, OptionalExtension as _, params};
use zeroize::Zeroize as _;

use super::{Aggregator, ServiceError};
use crate::audit::AuditEvent;
use crate::issuer::{IssueError, Issuer, IssuerSecret, TokenVerifier};
use crate::ledger::{LedgerError, TokenCounts};

/// Tokens issued per device and scope (the quota), and per scope (the audit count), in
/// the ledger's database so that a restart forgets nothing. Rows of a scope are
/// deleted when its period's count is logged.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS token_issued (
  device BLOB NOT NULL, scope BLOB NOT NULL, period INTEGER NOT NULL, issued INTEGER NOT NULL,
  PRIMARY KEY (device, scope)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS token_scope_issued (
  scope BLOB PRIMARY KEY, period INTEGER NOT NULL, issued INTEGER NOT NULL, devices INTEGER NOT NULL);
";

fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl TokenCounts for Connection {
    fn create_token_tables(&self) -> Result<(), LedgerError> {
        Ok(self.execute_batch(SCHEMA)?)
    }

    fn issued_before(&self, device: &[u8], scope: &[u8]) -> Result<u32, LedgerError> {
        let n: Option<i64> = self
            .query_row(
                "SELECT issued FROM token_issued WHERE device = ?1 AND scope = ?2",
                params![device, scope],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    fn count_issued(
        &self,
        device: &[u8],
        scope: &[u8],
        period: i64,
        before: u32,
        n: u32,
    ) -> Result<(), LedgerError> {
        let changed = self.execute(
            "INSERT INTO token_issued (device, scope, period, issued) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device, scope) DO UPDATE SET issued = excluded.issued WHERE issued = ?5",
            params![device, scope, period, i64::from(before) + i64::from(n), i64::from(before)],
        )?;
        if changed != 1 {
            return Err(LedgerError::Shared(crate::store::StoreError::Conflict));
        }
        self.execute(
            "INSERT INTO token_scope_issued (scope, period, issued, devices) VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (scope) DO UPDATE SET issued = issued + excluded.issued, devices = devices + ?4",
            params![scope, period, i64::from(n), i64::from(before == 0)],
        )?;
        Ok(())
    }

    fn first_period(&self) -> Result<Option<i64>, LedgerError> {
        Ok(self.query_row("SELECT MIN(period) FROM token_scope_issued", [], |r| r.get(0))?)
    }

    fn scope_counts_before(&self, open: i64) -> Result<Vec<(Vec<u8>, i64, i64)>, LedgerError> {
        let mut stmt = self.prepare(
            "SELECT scope, issued, devices FROM token_scope_issued WHERE period < ?1 ORDER BY scope",
        )?;
        let rows = stmt
            .query_map([open], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn forget_before(&self, open: i64) -> Result<(), LedgerError> {
        self.execute("DELETE FROM token_scope_issued WHERE period < ?1", [open])?;
        self.execute("DELETE FROM token_issued WHERE period < ?1", [open])?;
        Ok(())
    }
}

impl Aggregator {
    /// Turns report tokens on with the issuer's `secret`: from now on the aggregator
    /// issues tokens ([`Self::issue_tokens`]) and every envelope's anonymous statistics
    /// need one ([`Self::set_token_verifier`]). Creates the issuance tables if absent.
    ///
    /// # Errors
    /// [`ServiceError::Ledger`] when the tables cannot be created; the catalogue's token
    /// period must be fixed (a validated catalogue's is).
    pub fn enable_tokens(&mut self, secret: IssuerSecret) -> Result<(), ServiceError> {
        let bad = |e: IssueError| {
            ServiceError::Ledger(LedgerError::Corrupt(if matches!(e, IssueError::UnknownScope) {
                "the catalogue's token period is not fixed"
            } else {
                "token issuer"
            }))
        };
        let issuer = Issuer::new(secret.clone(), &self.catalogue).map_err(bad)?;
        let verifier = TokenVerifier::new(secret, &self.catalogue).map_err(bad)?;
        self.ledger.token_counts().create_token_tables()?;
        let due = self.ledger.token_counts().first_period()?;
        self.issuance_due = due.map(|p| TokenPeriod(u64::try_from(p).unwrap_or(0)).end(issuer.period_secs()));
        self.issuer = Some(Arc::new(issuer));
        self.tokens = Some(verifier);
        Ok(())
    }

    /// The issuer's public key for `scope`: what a device blinds against (the same for
    /// every device: key consistency, RFC 9576 §6.2.2).
    ///
    /// # Errors
    /// [`IssueError::UnknownScope`] when tokens are off or the catalogue has no such scope.
    pub fn token_public_key(&self, scope: &TokenScope) -> Result<PublicKey, IssueError> {
        let issuer = self.issuer.as_ref().ok_or(IssueError::UnknownScope)?;
        if !issuer.knows(scope) {
            return Err(IssueError::UnknownScope);
        }
        issuer.public_key(scope).map_err(IssueError::Malformed)
    }

    /// The token period length in seconds, when tokens are on.
    #[must_use]
    pub fn token_period_secs(&self) -> Option<u64> {
        self.issuer.as_ref().map(|i| i.period_secs())
    }

    /// Answers one device's token request ([`Self::issue_tokens_many`]).
    ///
    /// # Errors
    /// [`IssueError`]: nothing issued, nothing counted.
    pub fn issue_tokens<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        request: &TokenRequest,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<TokenResponse, IssueError> {
        let mut out = self.issue_tokens_many(core::slice::from_ref(request), now, rng)?;
        out.pop().unwrap_or(Err(IssueError::Store("no answer".into())))
    }

    /// Answers token requests, each on its own, in one transaction: the ledger is the
    /// policy (enrolled device key, live consent where the purpose needs it,
    /// [`IssuancePolicy`](crate::issuer::IssuancePolicy) for [`Ledger`](crate::ledger::Ledger)),
    /// and each device gets at most the catalogue's `tokens_per_period` per scope,
    /// counted in the database with the request (a restart does not reset a quota). A
    /// refused request issues and counts nothing.
    ///
    /// # Errors
    /// [`IssueError::UnknownScope`] for every request when tokens are off;
    /// [`IssueError::Store`] (for all) when the counts cannot be written — then none is
    /// issued.
    pub fn issue_tokens_many<R: rand_core::CryptoRng + ?Sized>(
        &mut self,
        requests: &[TokenRequest],
        now: Timestamp,
        rng: &mut R,
    ) -> Result<Vec<Result<TokenResponse, IssueError>>, IssueError> {
        let issuer = Arc::clone(self.issuer.as_ref().ok_or(IssueError::UnknownScope)?);
        if self.issuance_due.is_some_and(|due| now >= due) {
            self.log_token_issuance(now).map_err(|e| IssueError::Store(e.to_string()))?;
        }
        let out = self
            .ledger
            .atomically(|l| -> Result<_, LedgerError> {
                // The stateless checks and a first quota check, in order, on this thread;
                // a fresh proof nonce for every request that passes them.
                let mut verdicts: Vec<Option<Result<TokenResponse, IssueError>>> =
                    requests.iter().map(|_| None).collect();
                let mut todo: Vec<(usize, Scalar)> = Vec::new();
                for (i, request) in requests.iter().enumerate() {
                    // A lazily loaded ledger reads the device's subject (and its consent) first.
                    l.load_device(&request.device_key)?;
                    let before = match issuer.admit(request, &*l, now) {
                        Ok(()) => l
                            .token_counts()
                            .issued_before(&request.device_key.0, &request.scope.to_bytes())?,
                        Err(e) => {
                            verdicts[i] = Some(Err(e));
                            continue;
                        }
                    };
                    match issuer.check_quota(request, before) {
                        Ok(()) => todo.push((i, Scalar::random(rng))),
                        Err(e) => verdicts[i] = Some(Err(e)),
                    }
                }
                let answers = answer_all(&issuer, requests, &todo);
                // Counting, in order: a device's second request in this batch sees its
                // first one counted, as if they had come one at a time.
                for ((i, r), answer) in todo.iter_mut().zip(answers) {
                    r.zeroize();
                    let request = &requests[*i];
                    let scope = request.scope.to_bytes();
                    let before = l.token_counts().issued_before(&request.device_key.0, &scope)?;
                    let answer = issuer.check_quota(request, before).and(answer);
                    if answer.is_ok() {
                        let n = u32::try_from(request.blinded.len()).unwrap_or(u32::MAX);
                        let period = sql_u64(request.scope.period.0);
                        l.token_counts().count_issued(&request.device_key.0, &scope, period, before, n)?;
                    }
                    verdicts[*i] = Some(answer);
                }
                Ok(verdicts
                    .into_iter()
                    .map(|v| v.unwrap_or(Err(IssueError::UnknownScope)))
                    .collect::<Vec<_>>())
            })
            .map_err(|e| IssueError::Store(e.to_string()))?;
        if let Some(p) = out
            .iter()
            .zip(requests)
            .filter(|(r, _)| r.is_ok())
            .map(|(_, q)| q.scope.period.end(issuer.period_secs()))
            .min()
        {
            self.issuance_due = Some(self.issuance_due.map_or(p, |d| d.min(p)));
        }
        Ok(out)
    }

    /// Logs one [`AuditEvent::TokensIssued`] per scope whose period ended by `now`
    /// (tokens and devices counted, no device named) and forgets that scope's counts,
    /// in one transaction. Runs by itself at the first issuance or purge after a
    /// period's end; returns the events logged.
    ///
    /// # Errors
    /// [`ServiceError`] when the database fails; then nothing is logged or forgotten.
    pub fn log_token_issuance(&mut self, now: Timestamp) -> Result<u32, ServiceError> {
        let Some(secs) = self.issuer.as_ref().map(|i| i.period_secs()) else {
            return Ok(0);
        };
        // Periods [.., open) are over: their end is at or before now.
        let open = sql_u64(TokenPeriod::at(now, secs).0);
        let logged = self.record_with_events(|l, events| {
            let rows = l.token_counts().scope_counts_before(open)?;
            for (bytes, issued, devices) in rows {
                let scope: TokenScope = postcard::from_bytes(&bytes)
                    .map_err(|_| LedgerError::Corrupt("token_scope_issued.scope"))?;
                events.push(AuditEvent::TokensIssued {
                    recipients: scope.recipients.into_iter().collect(),
                    purpose: scope.purpose,
                    period: scope.period.0,
                    tokens: u64::try_from(issued).unwrap_or(0),
                    devices: u64::try_from(devices).unwrap_or(0),
                    at: now,
                });
            }
            l.token_counts().forget_before(open)?;
            Ok(u32::try_from(events.len()).unwrap_or(u32::MAX))
        })?;
        let next = self.ledger.token_counts().first_period()?;
        self.issuance_due = next.map(|p| TokenPeriod(u64::try_from(p).unwrap_or(0)).end(secs));
        Ok(logged)
    }
}

/// `BlindEvaluate` of the requests `todo` names, each with its proof nonce, on every core
/// (a contiguous part per thread); the answers in `todo`'s order.
fn answer_all(
    issuer: &Issuer,
    requests: &[TokenRequest],
    todo: &[(usize, Scalar)],
) -> Vec<Result<TokenResponse, IssueError>> {
    let one = |&(i, r): &(usize, Scalar)| issuer.answer(&requests[i], r);
    let threads = std::thread::available_parallelism().map_or(1, core::num::NonZeroUsize::get);
    if threads < 2 || todo.len() < 2 {
        return todo.iter().map(one).collect();
    }
    let per_thread = todo.len().div_ceil(threads);
    std::thread::scope(|s| {
        let mut parts = todo.chunks(per_thread);
        let mine = parts.next().unwrap_or_default();
        let workers: Vec<_> =
            parts.map(|part| (part, s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))).collect();
        let mut all: Vec<_> = mine.iter().map(one).collect();
        for (part, w) in workers {
            // `answer` does not panic; if a worker did, its part is answered again here.
            match w.join() {
                Ok(answers) => all.extend(answers),
                Err(_) => all.extend(part.iter().map(one)),
            }
        }
        all
    })
}
