"""Single-use marks in SQL: a link's ``jti``, a Slack signature, a signed-out session.

Marking is an insert on a primary key, so the second use is refused on every replica.
"""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from broker.errors import StoreUnavailable
from broker.store import tables as t
from broker.store.engine import Database


class SqlTokens:
    def __init__(self, db: Database) -> None:
        self.db = db

    def use_token(self, jti: str, request_id: str, expires_at: float, now: float) -> bool:
        """Mark a link token used; False if it was used before (on any replica)."""
        try:
            with self.db.engine.begin() as connection:
                connection.execute(
                    insert(t.used_tokens).values(
                        jti=jti, request_id=request_id, used_at=now, expires_at=expires_at
                    )
                )
        except IntegrityError:
            return False
        except SQLAlchemyError as e:
            raise StoreUnavailable("the broker's store is unavailable") from e
        return True

    def token_used(self, jti: str) -> bool:
        query = select(t.used_tokens.c.jti).where(t.used_tokens.c.jti == jti)
        with self.db.tx() as connection:
            return connection.execute(query).first() is not None

    def token_note(self, jti: str) -> str | None:
        query = select(t.used_tokens.c.request_id).where(t.used_tokens.c.jti == jti)
        with self.db.tx() as connection:
            row = connection.execute(query).first()
        return None if row is None else str(row[0])

    def prune(self, now: float) -> None:
        """Forget used tokens once they could no longer be replayed anyway."""
        with self.db.tx() as connection:
            connection.execute(delete(t.used_tokens).where(t.used_tokens.c.expires_at < now))
