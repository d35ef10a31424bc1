//! The SQL of the store, written once and expanded into each back end.
//!
//! Both SQLite and PostgreSQL accept `$N` parameters, `INSERT .. RETURNING`,
//! `ON CONFLICT .. DO UPDATE`, partial indexes and `TRUE`/`FALSE`, so one text serves
//! both. What differs is only how a writing transaction serialises against others:
//! each back end provides `write_tx(key)` (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: a
//! transaction-scoped advisory lock on `key`). sqlx's types differ per database
//! (`Pool<Sqlite>` vs `Pool<Postgres>`), so generic code would need a wall of trait
//! bounds; a macro expanding the same bodies for each concrete type is simpler and
//! type-checks each expansion fully.

/// Decodes a JSON text column.
pub(crate) fn parse_json(text: &str, what: &str) -> Result<serde_json::Value, super::StoreError> {
    serde_json::from_str(text).map_err(|e| super::StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn to_json(value: &serde_json::Value) -> String {
    // Serializing a `Value` cannot fail (its map keys are strings); fall back to null
    // rather than carry an impossible error through every signature.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// The columns every call-record query selects, in the order `call_from_row` reads.
pub(crate) const CALL_COLUMNS: &str = "id, session_id, account, peer_account, caller, callee, \
     kind, trunk, call_ms, ring_ms, answer_ms, end_ms, duration_s, outcome, sip_status, \
     codecs, quality, state, node";

/// The lock key of one device's push queue.
pub(crate) fn device_key(account: &str, device: &str) -> String {
    // Length-prefixed so distinct (account, device) pairs never share a key text
    // whatever characters the ids hold (PostgreSQL text cannot carry a NUL separator).
    format!("push:{}:{account}:{device}", account.len())
}

/// A device's highest queued seq and its retention watermark, as one row.
pub(crate) const DEVICE_STATE: &str = "SELECT \
     (SELECT MAX(seq) FROM push_events WHERE account = $1 AND device = $2) AS queued, \
     (SELECT purged_seq FROM push_devices WHERE account = $1 AND device = $2) AS purged";

/// Undelivered events of a device after seq `$3` (0: all; the same parameters as
/// [`CLAIM_AFTER`]), oldest first, at most `$4`.
pub(crate) const CLAIM_PENDING: &str = "SELECT seq, account, device, event, created_ms, \
     delivered_ms FROM push_events \
     WHERE account = $1 AND device = $2 AND delivered_ms IS NULL AND seq > $3 \
     ORDER BY seq LIMIT $4";

/// Retained events of a device after seq `$3`, delivered or not, oldest first, at most
/// `$4`.
pub(crate) const CLAIM_AFTER: &str = "SELECT seq, account, device, event, created_ms, \
     delivered_ms FROM push_events \
     WHERE account = $1 AND device = $2 AND seq > $3 \
     ORDER BY seq LIMIT $4";

macro_rules! impl_store {
    ($store:ty, $row:ty) => {
        impl $store {
            fn account_from_row(row: &$row) -> $crate::store::StoreResult<$crate::store::Account> {
                use sqlx::Row as _;
                let info: String = row.try_get("info")?;
                Ok($crate::store::Account {
                    uuid: row.try_get("uuid")?,
                    name: row.try_get("name")?,
                    pwd_hash: row.try_get("pwd_hash")?,
                    group: row.try_get("grp")?,
                    active: row.try_get("active")?,
                    info: $crate::store::sql::parse_json(&info, "accounts.info")?,
                    created_ms: row.try_get("created_ms")?,
                })
            }

            fn login_from_row(row: &$row) -> $crate::store::StoreResult<$crate::store::Login> {
                use sqlx::Row as _;
                Ok($crate::store::Login {
                    account: row.try_get("account")?,
                    device: row.try_get("device")?,
                    created_ms: row.try_get("created_ms")?,
                })
            }

            fn call_from_row(row: &$row) -> $crate::store::StoreResult<$crate::store::CallRecord> {
                use sqlx::Row as _;
                let quality: Option<String> = row.try_get("quality")?;
                Ok($crate::store::CallRecord {
                    id: row.try_get("id")?,
                    session_id: row.try_get("session_id")?,
                    account: row.try_get("account")?,
                    peer_account: row.try_get("peer_account")?,
                    caller: row.try_get("caller")?,
                    callee: row.try_get("callee")?,
                    kind: row.try_get("kind")?,
                    trunk: row.try_get("trunk")?,
                    call_ms: row.try_get("call_ms")?,
                    ring_ms: row.try_get("ring_ms")?,
                    answer_ms: row.try_get("answer_ms")?,
                    end_ms: row.try_get("end_ms")?,
                    duration_s: row.try_get("duration_s")?,
                    outcome: row.try_get("outcome")?,
                    sip_status: row.try_get("sip_status")?,
                    codecs: row.try_get("codecs")?,
                    quality: quality
                        .as_deref()
                        .map(|q| $crate::store::sql::parse_json(q, "call_records.quality"))
                        .transpose()?,
                    state: row.try_get("state")?,
                    node: row.try_get("node")?,
                })
            }

            /// (last issued seq, purged-through seq) from a `DEVICE_STATE` row.
            fn device_state(row: &$row) -> $crate::store::StoreResult<(i64, i64)> {
                use sqlx::Row as _;
                let queued: Option<i64> = row.try_get("queued")?;
                let purged: Option<i64> = row.try_get("purged")?;
                let purged = purged.unwrap_or(0);
                Ok((queued.unwrap_or(0).max(purged), purged))
            }

            fn event_from_row(row: &$row) -> $crate::store::StoreResult<$crate::store::PushEvent> {
                use sqlx::Row as _;
                let event: String = row.try_get("event")?;
                Ok($crate::store::PushEvent {
                    seq: row.try_get("seq")?,
                    account: row.try_get("account")?,
                    device: row.try_get("device")?,
                    event: $crate::store::sql::parse_json(&event, "push_events.event")?,
                    created_ms: row.try_get("created_ms")?,
                    delivered_ms: row.try_get("delivered_ms")?,
                })
            }
        }

        impl $crate::store::Store for $store {
            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            // --- accounts ----------------------------------------------------------

            async fn create_account(
                &self,
                new: &$crate::store::NewAccount,
            ) -> $crate::store::StoreResult<()> {
                use $crate::store::StoreError;
                let mut tx = self.write_tx(&format!("account:{}", new.uuid)).await?;
                sqlx::query(
                    "INSERT INTO accounts (uuid, name, pwd_hash, grp, active, info, created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&new.uuid)
                .bind(&new.name)
                .bind(&new.pwd_hash)
                .bind(&new.group)
                .bind(new.active)
                .bind($crate::store::sql::to_json(&new.info))
                .bind(new.created_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::from_db(e, "account"))?;
                if let Some(phone) = &new.phone {
                    sqlx::query(
                        "INSERT INTO phone_bindings (phone, account, created_ms) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(phone)
                    .bind(&new.uuid)
                    .bind(new.created_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::from_db(e, "phone"))?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn get_account(
                &self,
                uuid: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::Account>> {
                let row = sqlx::query(
                    "SELECT uuid, name, pwd_hash, grp, active, info, created_ms \
                     FROM accounts WHERE uuid = $1",
                )
                .bind(uuid)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::account_from_row).transpose()
            }

            async fn set_password(
                &self,
                uuid: &str,
                pwd_hash: &str,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE accounts SET pwd_hash = $2 WHERE uuid = $1")
                    .bind(uuid)
                    .bind(pwd_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_info(
                &self,
                uuid: &str,
                info: &serde_json::Value,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE accounts SET info = $2 WHERE uuid = $1")
                    .bind(uuid)
                    .bind($crate::store::sql::to_json(info))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_active(
                &self,
                uuid: &str,
                active: bool,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE accounts SET active = $2 WHERE uuid = $1")
                    .bind(uuid)
                    .bind(active)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            // --- phone numbers -----------------------------------------------------

            async fn bind_phone(
                &self,
                phone: &str,
                account: &str,
                now_ms: i64,
            ) -> $crate::store::StoreResult<()> {
                use sqlx::Row as _;
                use $crate::store::StoreError;
                let mut tx = self.write_tx(&format!("phone:{phone}")).await?;
                let owner = sqlx::query("SELECT account FROM phone_bindings WHERE phone = $1")
                    .bind(phone)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(owner) = owner {
                    let owner: String = owner.try_get("account")?;
                    return if owner == account {
                        Ok(())
                    } else {
                        Err(StoreError::Conflict("phone"))
                    };
                }
                sqlx::query(
                    "INSERT INTO phone_bindings (phone, account, created_ms) VALUES ($1, $2, $3)",
                )
                .bind(phone)
                .bind(account)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| match StoreError::from_db(e, "phone") {
                    // The only foreign key here is the account.
                    StoreError::NotFound(_) => StoreError::NotFound("account"),
                    other => other,
                })?;
                tx.commit().await?;
                Ok(())
            }

            async fn unbind_phone(&self, phone: &str) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM phone_bindings WHERE phone = $1")
                    .bind(phone)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn account_for_phone(
                &self,
                phone: &str,
            ) -> $crate::store::StoreResult<Option<String>> {
                Ok(
                    sqlx::query_scalar("SELECT account FROM phone_bindings WHERE phone = $1")
                        .bind(phone)
                        .fetch_optional(&self.pool)
                        .await?,
                )
            }

            async fn phones_of(&self, account: &str) -> $crate::store::StoreResult<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT phone FROM phone_bindings WHERE account = $1 ORDER BY phone",
                )
                .bind(account)
                .fetch_all(&self.pool)
                .await?)
            }

            // --- auth codes --------------------------------------------------------

            async fn issue_auth_code(
                &self,
                code: &$crate::store::NewAuthCode,
                limits: &[$crate::store::RateLimit],
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.write_tx(&format!("code:{}", code.phone)).await?;
                for limit in limits {
                    let issued: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM auth_codes WHERE phone = $1 AND created_ms > $2",
                    )
                    .bind(&code.phone)
                    .bind(code.created_ms.saturating_sub(limit.window_ms))
                    .fetch_one(&mut *tx)
                    .await?;
                    if issued >= limit.max {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                }
                sqlx::query(
                    "INSERT INTO auth_codes \
                     (phone, kind, code_hash, device, created_ms, expires_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&code.phone)
                .bind(&code.kind)
                .bind(&code.code_hash)
                .bind(&code.device)
                .bind(code.created_ms)
                .bind(code.expires_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn count_auth_codes(
                &self,
                phone: &str,
                since_ms: i64,
            ) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM auth_codes WHERE phone = $1 AND created_ms > $2",
                )
                .bind(phone)
                .bind(since_ms)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn consume_auth_code(
                &self,
                phone: &str,
                kind: &str,
                code_hash: &str,
                now_ms: i64,
                max_attempts: i64,
            ) -> $crate::store::StoreResult<bool> {
                // The lock makes check-and-use one step; `used = FALSE` in the outer
                // WHERE would also stop a second use on its own.
                let mut tx = self.write_tx(&format!("code:{phone}")).await?;
                let used = sqlx::query(
                    "UPDATE auth_codes SET used = TRUE \
                     WHERE used = FALSE AND id = ( \
                       SELECT id FROM auth_codes \
                       WHERE phone = $1 AND kind = $2 AND code_hash = $3 AND used = FALSE \
                         AND expires_ms > $4 AND attempts < $5 \
                       ORDER BY id DESC LIMIT 1)",
                )
                .bind(phone)
                .bind(kind)
                .bind(code_hash)
                .bind(now_ms)
                .bind(max_attempts)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if used {
                    // One proof of the phone is enough: older codes must not stay
                    // usable after it.
                    sqlx::query(
                        "UPDATE auth_codes SET used = TRUE \
                         WHERE phone = $1 AND kind = $2 AND used = FALSE",
                    )
                    .bind(phone)
                    .bind(kind)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query(
                        "UPDATE auth_codes SET attempts = attempts + 1 \
                         WHERE phone = $1 AND kind = $2 AND used = FALSE AND expires_ms > $3",
                    )
                    .bind(phone)
                    .bind(kind)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(used)
            }

            // --- logins ------------------------------------------------------------

            async fn put_login(
                &self,
                login: &$crate::store::NewLogin,
            ) -> $crate::store::StoreResult<Option<$crate::store::Login>> {
                use $crate::store::StoreError;
                let mut tx = self.write_tx(&format!("login:{}", login.account)).await?;
                let previous = sqlx::query(
                    "DELETE FROM logins WHERE account = $1 RETURNING account, device, created_ms",
                )
                .bind(&login.account)
                .fetch_optional(&mut *tx)
                .await?;
                let previous = previous.as_ref().map(Self::login_from_row).transpose()?;
                sqlx::query(
                    "INSERT INTO logins (account, device, token_hash, created_ms) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&login.account)
                .bind(&login.device)
                .bind(&login.token_hash)
                .bind(login.created_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| match StoreError::from_db(e, "login token") {
                    StoreError::NotFound(_) => StoreError::NotFound("account"),
                    other => other,
                })?;
                tx.commit().await?;
                Ok(previous)
            }

            async fn get_login(
                &self,
                account: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::Login>> {
                let row = sqlx::query(
                    "SELECT account, device, created_ms FROM logins WHERE account = $1",
                )
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::login_from_row).transpose()
            }

            async fn login_by_token(
                &self,
                token_hash: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::Login>> {
                let row = sqlx::query(
                    "SELECT account, device, created_ms FROM logins WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(Self::login_from_row).transpose()
            }

            async fn delete_login(
                &self,
                account: &str,
                device: &str,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("DELETE FROM logins WHERE account = $1 AND device = $2")
                    .bind(account)
                    .bind(device)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_logins(&self, account: &str) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query("DELETE FROM logins WHERE account = $1")
                    .bind(account)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            // --- call detail records -----------------------------------------------

            async fn insert_live(
                &self,
                start: &$crate::store::CallRecordStart,
            ) -> $crate::store::StoreResult<i64> {
                sqlx::query_scalar(
                    "INSERT INTO call_records \
                     (session_id, account, peer_account, caller, callee, kind, trunk, call_ms, \
                      state, node) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(&start.session_id)
                .bind(&start.account)
                .bind(&start.peer_account)
                .bind(&start.caller)
                .bind(&start.callee)
                .bind(start.kind.as_str())
                .bind(&start.trunk)
                .bind(start.call_ms)
                .bind($crate::store::STATE_LIVE)
                .bind(&start.node)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_db(e, "session_id"))
            }

            async fn set_ringing(&self, id: i64, ms: i64) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE call_records SET ring_ms = $2 \
                     WHERE id = $1 AND state = $3 AND ring_ms IS NULL",
                )
                .bind(id)
                .bind(ms)
                .bind($crate::store::STATE_LIVE)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn set_answered(&self, id: i64, ms: i64) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE call_records SET answer_ms = $2 \
                     WHERE id = $1 AND state = $3 AND answer_ms IS NULL",
                )
                .bind(id)
                .bind(ms)
                .bind($crate::store::STATE_LIVE)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn heartbeat(&self, node: &str, now_ms: i64) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO node_heartbeats (node, last_ms) VALUES ($1, $2) \
                     ON CONFLICT (node) DO UPDATE SET last_ms = excluded.last_ms",
                )
                .bind(node)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn finalize(
                &self,
                id: i64,
                end: &$crate::store::CallRecordEnd,
            ) -> $crate::store::StoreResult<bool> {
                // The billable duration depends on the answer time, which may have been
                // stored earlier by `set_answered`; read it inside the same transaction
                // that closes the row. The `state = live` guard on the UPDATE is what
                // makes a second (or concurrent) finalize a no-op.
                use sqlx::Row as _;
                let mut tx = self.write_tx(&format!("call:{id}")).await?;
                let row = sqlx::query(
                    "SELECT ring_ms, answer_ms FROM call_records WHERE id = $1 AND state = $2",
                )
                .bind(id)
                .bind($crate::store::STATE_LIVE)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    tx.rollback().await?;
                    return Ok(false);
                };
                let ring_ms: Option<i64> = row.try_get("ring_ms")?;
                let answer_ms: Option<i64> = row.try_get("answer_ms")?;
                let ring_ms = ring_ms.or(end.ring_ms);
                let answer_ms = answer_ms.or(end.answer_ms);
                let duration = $crate::store::billable_seconds(answer_ms, end.end_ms);
                let done = sqlx::query(
                    "UPDATE call_records SET state = $2, ring_ms = $3, answer_ms = $4, \
                       end_ms = $5, duration_s = $6, outcome = $7, sip_status = $8, \
                       codecs = $9, quality = $10, trunk = COALESCE($11, trunk) \
                     WHERE id = $1 AND state = $12",
                )
                .bind(id)
                .bind($crate::store::STATE_ENDED)
                .bind(ring_ms)
                .bind(answer_ms)
                .bind(end.end_ms)
                .bind(duration)
                .bind(end.outcome.as_str())
                .bind(end.sip_status.map(i64::from))
                .bind(&end.codecs)
                .bind(end.quality.as_ref().map($crate::store::sql::to_json))
                .bind(&end.trunk)
                .bind($crate::store::STATE_LIVE)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn write_call_records(
                &self,
                batch: &[$crate::store::CallRecordWrite],
            ) -> $crate::store::StoreResult<Vec<Option<i64>>> {
                // One transaction for the whole batch: a commit (and, for
                // SQLite, its WAL append) per batch instead of per event.
                let mut tx = self.write_tx("call_records").await?;
                let mut ids = Vec::with_capacity(batch.len());
                for w in batch {
                    let id = match (&w.start, w.id) {
                        (Some(start), _) => Some(
                            sqlx::query_scalar(
                                "INSERT INTO call_records \
                                 (session_id, account, peer_account, caller, callee, kind, \
                                  trunk, call_ms, ring_ms, answer_ms, state, node) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                                 RETURNING id",
                            )
                            .bind(&start.session_id)
                            .bind(&start.account)
                            .bind(&start.peer_account)
                            .bind(&start.caller)
                            .bind(&start.callee)
                            .bind(start.kind.as_str())
                            .bind(&start.trunk)
                            .bind(start.call_ms)
                            .bind(w.ring_ms)
                            .bind(w.answer_ms)
                            .bind($crate::store::STATE_LIVE)
                            .bind(&start.node)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(|e| $crate::store::StoreError::from_db(e, "session_id"))?,
                        ),
                        (None, Some(id)) => {
                            if w.end.is_none() && (w.ring_ms.is_some() || w.answer_ms.is_some()) {
                                sqlx::query(
                                    "UPDATE call_records SET ring_ms = COALESCE(ring_ms, $2), \
                                       answer_ms = COALESCE(answer_ms, $3) \
                                     WHERE id = $1 AND state = $4",
                                )
                                .bind(id)
                                .bind(w.ring_ms)
                                .bind(w.answer_ms)
                                .bind($crate::store::STATE_LIVE)
                                .execute(&mut *tx)
                                .await?;
                            }
                            Some(id)
                        }
                        (None, None) => None,
                    };
                    if let (Some(id), Some(end)) = (id, &w.end) {
                        // As `finalize`, in one statement: the row's own ring and
                        // answer times win (the right-hand sides see the old row),
                        // the duration is billed from the answer, rounded up.
                        sqlx::query(
                            "UPDATE call_records SET state = $2, \
                               ring_ms = COALESCE(ring_ms, $3), \
                               answer_ms = COALESCE(answer_ms, $4), \
                               end_ms = $5, \
                               duration_s = CASE \
                                 WHEN COALESCE(answer_ms, $4) IS NOT NULL \
                                   AND $5 > COALESCE(answer_ms, $4) \
                                 THEN ($5 - COALESCE(answer_ms, $4) + 999) / 1000 \
                                 ELSE 0 END, \
                               outcome = $6, sip_status = $7, codecs = $8, quality = $9, \
                               trunk = COALESCE($10, trunk) \
                             WHERE id = $1 AND state = $11",
                        )
                        .bind(id)
                        .bind($crate::store::STATE_ENDED)
                        .bind(end.ring_ms.or(w.ring_ms))
                        .bind(end.answer_ms.or(w.answer_ms))
                        .bind(end.end_ms)
                        .bind(end.outcome.as_str())
                        .bind(end.sip_status.map(i64::from))
                        .bind(&end.codecs)
                        .bind(end.quality.as_ref().map($crate::store::sql::to_json))
                        .bind(&end.trunk)
                        .bind($crate::store::STATE_LIVE)
                        .execute(&mut *tx)
                        .await?;
                    }
                    ids.push(id);
                }
                tx.commit().await?;
                Ok(ids)
            }

            async fn close_stale(
                &self,
                node: &str,
                now_ms: i64,
            ) -> $crate::store::StoreResult<u64> {
                use sqlx::Row as _;
                let heartbeat: Option<i64> =
                    sqlx::query_scalar("SELECT last_ms FROM node_heartbeats WHERE node = $1")
                        .bind(node)
                        .fetch_optional(&self.pool)
                        .await?;
                let rows = sqlx::query(
                    "SELECT id, call_ms, ring_ms, answer_ms FROM call_records \
                     WHERE node = $1 AND state = $2",
                )
                .bind(node)
                .bind($crate::store::STATE_LIVE)
                .fetch_all(&self.pool)
                .await?;
                let mut closed = 0;
                for row in rows {
                    let id: i64 = row.try_get("id")?;
                    let call_ms: i64 = row.try_get("call_ms")?;
                    let ring_ms: Option<i64> = row.try_get("ring_ms")?;
                    let answer_ms: Option<i64> = row.try_get("answer_ms")?;
                    // The call was certainly alive at its own last event; it may have
                    // lived until the last heartbeat; it cannot have outlived `now`.
                    let known = call_ms
                        .max(ring_ms.unwrap_or(call_ms))
                        .max(answer_ms.unwrap_or(call_ms));
                    let end_ms = known.max(heartbeat.unwrap_or(known)).min(now_ms.max(known));
                    let duration = $crate::store::billable_seconds(answer_ms, end_ms);
                    let done = sqlx::query(
                        "UPDATE call_records SET state = $2, outcome = $3, end_ms = $4, \
                           duration_s = $5 \
                         WHERE id = $1 AND state = $6",
                    )
                    .bind(id)
                    .bind($crate::store::STATE_ENDED)
                    .bind($crate::store::Outcome::SwitchRestart.as_str())
                    .bind(end_ms)
                    .bind(duration)
                    .bind($crate::store::STATE_LIVE)
                    .execute(&self.pool)
                    .await?;
                    closed += done.rows_affected();
                }
                Ok(closed)
            }

            async fn get_call(
                &self,
                id: i64,
            ) -> $crate::store::StoreResult<Option<$crate::store::CallRecord>> {
                let sql = format!(
                    "SELECT {} FROM call_records WHERE id = $1",
                    $crate::store::sql::CALL_COLUMNS
                );
                let row = sqlx::query(&sql).bind(id).fetch_optional(&self.pool).await?;
                row.as_ref().map(Self::call_from_row).transpose()
            }

            async fn get_call_by_session(
                &self,
                session_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::CallRecord>> {
                let sql = format!(
                    "SELECT {} FROM call_records WHERE session_id = $1",
                    $crate::store::sql::CALL_COLUMNS
                );
                let row = sqlx::query(&sql)
                    .bind(session_id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(Self::call_from_row).transpose()
            }

            async fn list_calls(
                &self,
                account: &str,
                from_ms: i64,
                to_ms: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::CallRecord>> {
                let sql = format!(
                    "SELECT {} FROM call_records \
                     WHERE (account = $1 OR peer_account = $1) AND state = $2 \
                       AND call_ms >= $3 AND call_ms < $4 \
                     ORDER BY id LIMIT $5",
                    $crate::store::sql::CALL_COLUMNS
                );
                let rows = sqlx::query(&sql)
                    .bind(account)
                    .bind($crate::store::STATE_ENDED)
                    .bind(from_ms)
                    .bind(to_ms)
                    .bind(limit.max(0))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(Self::call_from_row).collect()
            }

            async fn history(
                &self,
                account: &str,
                start_id: i64,
                num: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::HistoryGroup>> {
                use sqlx::Row as _;
                let num = num.min($crate::store::HISTORY_MAX_GROUPS);
                if num <= 0 {
                    return Ok(Vec::new());
                }
                // Keyset paging on each group's newest id: every (caller, callee) pair
                // appears in exactly one group, so pages never repeat or skip a pair.
                let before = if start_id <= 0 { i64::MAX } else { start_id };
                let groups = sqlx::query(
                    "SELECT caller, callee, MAX(id) AS last_id, COUNT(*) AS times \
                     FROM call_records \
                     WHERE (account = $1 OR peer_account = $1) AND state = $2 \
                     GROUP BY caller, callee \
                     HAVING MAX(id) < $3 \
                     ORDER BY last_id DESC \
                     LIMIT $4",
                )
                .bind(account)
                .bind($crate::store::STATE_ENDED)
                .bind(before)
                .bind(num)
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(groups.len());
                for g in groups {
                    let caller: String = g.try_get("caller")?;
                    let callee: String = g.try_get("callee")?;
                    let rows = sqlx::query(
                        "SELECT id, kind, call_ms, ring_ms, answer_ms, end_ms, duration_s, outcome \
                         FROM call_records \
                         WHERE (account = $1 OR peer_account = $1) AND state = $2 \
                           AND caller = $3 AND callee = $4 \
                         ORDER BY id DESC LIMIT $5",
                    )
                    .bind(account)
                    .bind($crate::store::STATE_ENDED)
                    .bind(&caller)
                    .bind(&callee)
                    .bind($crate::store::HISTORY_MAX_DETAIL)
                    .fetch_all(&self.pool)
                    .await?;
                    let mut detail = Vec::with_capacity(rows.len());
                    for r in rows {
                        detail.push($crate::store::HistoryItem {
                            id: r.try_get("id")?,
                            kind: r.try_get("kind")?,
                            call_ms: r.try_get("call_ms")?,
                            ring_ms: r.try_get("ring_ms")?,
                            answer_ms: r.try_get("answer_ms")?,
                            end_ms: r.try_get("end_ms")?,
                            duration_s: r.try_get("duration_s")?,
                            outcome: r.try_get("outcome")?,
                        });
                    }
                    out.push($crate::store::HistoryGroup {
                        id: g.try_get("last_id")?,
                        caller,
                        callee,
                        times: g.try_get("times")?,
                        detail,
                    });
                }
                Ok(out)
            }

            // --- push queue --------------------------------------------------------

            async fn enqueue_event(
                &self,
                account: &str,
                device: &str,
                event: &serde_json::Value,
                now_ms: i64,
            ) -> $crate::store::StoreResult<i64> {
                // Under the device's lock: PostgreSQL hands out identity values at
                // insert, not at commit, so two unserialised enqueues for one device
                // could commit out of seq order and a poll resuming from the later one
                // would never see the earlier.
                let mut tx = self
                    .write_tx(&$crate::store::sql::device_key(account, device))
                    .await?;
                let seq = sqlx::query_scalar(
                    "INSERT INTO push_events (account, device, event, created_ms) \
                     VALUES ($1, $2, $3, $4) RETURNING seq",
                )
                .bind(account)
                .bind(device)
                .bind($crate::store::sql::to_json(event))
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(seq)
            }

            async fn pending_events(
                &self,
                account: &str,
                device: &str,
                after_seq: i64,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PushEvent>> {
                let rows = sqlx::query(
                    "SELECT seq, account, device, event, created_ms, delivered_ms \
                     FROM push_events \
                     WHERE account = $1 AND device = $2 AND seq > $3 AND delivered_ms IS NULL \
                     ORDER BY seq LIMIT $4",
                )
                .bind(account)
                .bind(device)
                .bind(after_seq)
                .bind(limit.max(0))
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(Self::event_from_row).collect()
            }

            async fn mark_delivered(
                &self,
                account: &str,
                device: &str,
                up_to_seq: i64,
                now_ms: i64,
            ) -> $crate::store::StoreResult<u64> {
                let done = sqlx::query(
                    "UPDATE push_events SET delivered_ms = $4 \
                     WHERE account = $1 AND device = $2 AND seq <= $3 AND delivered_ms IS NULL",
                )
                .bind(account)
                .bind(device)
                .bind(up_to_seq)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn claim_events(
                &self,
                account: &str,
                device: &str,
                after_seq: Option<i64>,
                limit: i64,
                now_ms: i64,
            ) -> $crate::store::StoreResult<$crate::store::ClaimedEvents> {
                use $crate::store::sql::{CLAIM_AFTER, CLAIM_PENDING, DEVICE_STATE};
                let limit = limit.max(0);
                // A plain read first: most checks of an idle poll find nothing, and
                // must not queue on the write lock (SQLite has one per database).
                let state = sqlx::query(DEVICE_STATE)
                    .bind(account)
                    .bind(device)
                    .fetch_one(&self.pool)
                    .await?;
                let (last_issued, purged) = Self::device_state(&state)?;
                let resume = after_seq.filter(|&n| n <= last_issued);
                let (text, from) = match resume {
                    Some(n) => (CLAIM_AFTER, n),
                    None => (CLAIM_PENDING, 0),
                };
                let peek = sqlx::query(text)
                    .bind(account)
                    .bind(device)
                    .bind(from)
                    .bind(1_i64)
                    .fetch_optional(&self.pool)
                    .await?;
                if peek.is_none() {
                    return Ok($crate::store::ClaimedEvents {
                        events: Vec::new(),
                        last_issued,
                        purged_through: purged,
                    });
                }
                // Under the device's lock (the one enqueue takes): the rows read are
                // exactly the rows marked, and a concurrent claim (another poll, or
                // another process on the same PostgreSQL) waits and then finds them
                // delivered.
                let mut tx = self
                    .write_tx(&$crate::store::sql::device_key(account, device))
                    .await?;
                let state = sqlx::query(DEVICE_STATE)
                    .bind(account)
                    .bind(device)
                    .fetch_one(&mut *tx)
                    .await?;
                let (last_issued, purged) = Self::device_state(&state)?;
                let resume = after_seq.filter(|&n| n <= last_issued);
                let (text, from) = match resume {
                    Some(n) => (CLAIM_AFTER, n),
                    None => (CLAIM_PENDING, 0),
                };
                let rows = sqlx::query(text)
                    .bind(account)
                    .bind(device)
                    .bind(from)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                let events = rows
                    .iter()
                    .map(Self::event_from_row)
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                if let (Some(first), Some(last)) = (events.first(), events.last()) {
                    sqlx::query(
                        "UPDATE push_events SET delivered_ms = $5 \
                         WHERE account = $1 AND device = $2 AND seq >= $3 AND seq <= $4 \
                           AND delivered_ms IS NULL",
                    )
                    .bind(account)
                    .bind(device)
                    .bind(first.seq)
                    .bind(last.seq)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok($crate::store::ClaimedEvents {
                    events,
                    last_issued,
                    purged_through: purged,
                })
            }

            async fn count_pending_events(
                &self,
                account: &str,
                device: &str,
            ) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar(
                    "SELECT COUNT(*) FROM push_events \
                     WHERE account = $1 AND device = $2 AND delivered_ms IS NULL",
                )
                .bind(account)
                .bind(device)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn purge_events(&self, before_ms: i64) -> $crate::store::StoreResult<u64> {
                use sqlx::Row as _;
                let mut tx = self.write_tx("push:purge").await?;
                let gone = sqlx::query(
                    "DELETE FROM push_events WHERE created_ms < $1 RETURNING account, device, seq",
                )
                .bind(before_ms)
                .fetch_all(&mut *tx)
                .await?;
                let mut highest: std::collections::HashMap<(String, String), i64> =
                    std::collections::HashMap::new();
                for row in &gone {
                    let key = (row.try_get("account")?, row.try_get("device")?);
                    let seq: i64 = row.try_get("seq")?;
                    let entry = highest.entry(key).or_insert(seq);
                    *entry = (*entry).max(seq);
                }
                for ((account, device), seq) in &highest {
                    // CASE rather than GREATEST/MAX: SQLite has no GREATEST and
                    // PostgreSQL's MAX is only an aggregate.
                    sqlx::query(
                        "INSERT INTO push_devices (account, device, purged_seq) \
                         VALUES ($1, $2, $3) \
                         ON CONFLICT (account, device) DO UPDATE SET purged_seq = \
                           CASE WHEN excluded.purged_seq > push_devices.purged_seq \
                           THEN excluded.purged_seq ELSE push_devices.purged_seq END",
                    )
                    .bind(account)
                    .bind(device)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("DELETE FROM push_deliveries WHERE created_ms < $1")
                    .bind(before_ms)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(u64::try_from(gone.len()).unwrap_or(u64::MAX))
            }

            // --- push provider tokens and deliveries ---------------------------------

            async fn put_push_token(
                &self,
                account: &str,
                device: &str,
                provider: &str,
                token: &str,
                now_ms: i64,
            ) -> $crate::store::StoreResult<()> {
                // One lock for all tokens: registrations are rare, and the two unique
                // keys (token; device + provider) would otherwise need two locks.
                let mut tx = self.write_tx("push:tokens").await?;
                sqlx::query(
                    "DELETE FROM push_tokens WHERE provider = $1 \
                     AND (token = $2 OR (account = $3 AND device = $4))",
                )
                .bind(provider)
                .bind(token)
                .bind(account)
                .bind(device)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO push_tokens (provider, token, account, device, updated_ms) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(provider)
                .bind(token)
                .bind(account)
                .bind(device)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(|e| $crate::store::StoreError::from_db(e, "push token"))?;
                tx.commit().await?;
                Ok(())
            }

            async fn push_tokens(
                &self,
                account: &str,
                device: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PushToken>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT account, device, provider, token, updated_ms FROM push_tokens \
                     WHERE account = $1 AND device = $2 ORDER BY provider",
                )
                .bind(account)
                .bind(device)
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::PushToken {
                            account: r.try_get("account")?,
                            device: r.try_get("device")?,
                            provider: r.try_get("provider")?,
                            token: r.try_get("token")?,
                            updated_ms: r.try_get("updated_ms")?,
                        })
                    })
                    .collect()
            }

            async fn delete_push_token(
                &self,
                provider: &str,
                token: &str,
            ) -> $crate::store::StoreResult<bool> {
                let done =
                    sqlx::query("DELETE FROM push_tokens WHERE provider = $1 AND token = $2")
                        .bind(provider)
                        .bind(token)
                        .execute(&self.pool)
                        .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_device_tokens(
                &self,
                account: &str,
                device: &str,
            ) -> $crate::store::StoreResult<u64> {
                let done =
                    sqlx::query("DELETE FROM push_tokens WHERE account = $1 AND device = $2")
                        .bind(account)
                        .bind(device)
                        .execute(&self.pool)
                        .await?;
                Ok(done.rows_affected())
            }

            async fn record_push_delivery(
                &self,
                d: &$crate::store::NewPushDelivery,
            ) -> $crate::store::StoreResult<i64> {
                Ok(sqlx::query_scalar(
                    "INSERT INTO push_deliveries \
                     (account, device, provider, seq, attempt, status, http_status, reason, \
                      created_ms) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind(&d.account)
                .bind(&d.device)
                .bind(&d.provider)
                .bind(d.seq)
                .bind(d.attempt)
                .bind(&d.status)
                .bind(d.http_status)
                .bind(&d.reason)
                .bind(d.created_ms)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn push_deliveries(
                &self,
                account: &str,
                device: &str,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::PushDelivery>> {
                use sqlx::Row as _;
                let rows = sqlx::query(
                    "SELECT id, account, device, provider, seq, attempt, status, http_status, \
                       reason, created_ms \
                     FROM push_deliveries WHERE account = $1 AND device = $2 \
                     ORDER BY id DESC LIMIT $3",
                )
                .bind(account)
                .bind(device)
                .bind(limit.max(0))
                .fetch_all(&self.pool)
                .await?;
                let mut out = rows
                    .iter()
                    .map(|r| {
                        Ok($crate::store::PushDelivery {
                            id: r.try_get("id")?,
                            account: r.try_get("account")?,
                            device: r.try_get("device")?,
                            provider: r.try_get("provider")?,
                            seq: r.try_get("seq")?,
                            attempt: r.try_get("attempt")?,
                            status: r.try_get("status")?,
                            http_status: r.try_get("http_status")?,
                            reason: r.try_get("reason")?,
                            created_ms: r.try_get("created_ms")?,
                        })
                    })
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                out.reverse();
                Ok(out)
            }
        }
    };
}

pub(crate) use impl_store;
