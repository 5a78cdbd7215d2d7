"""Giving a request's database connection back before it waits on the network.

A Galaxy session holds a pooled connection from its first query until its transaction ends. A
request that then waits for a cloud (minting credentials, checking a bucket and its objects) or an
identity provider would hold it for as long as they take: 50 concurrent gets on PostgreSQL got 30
answers "500 QueuePool limit of size 5 overflow 10 reached" that way, and on SQLite the open
transaction's lock made other requests' writes fail with "database is locked".
"""

from sqlalchemy.orm import scoped_session, Session


def release_connection(session) -> None:
    """End the session's transaction, keeping every object it loaded as loaded: a plain commit
    would expire them all, and reading a send's 100 datasets back costs a query each. What the
    request did so far is committed; callers release only after reads, or after writes that stand
    on their own (a used ticket)."""
    real: Session = session() if isinstance(session, scoped_session) else session
    expire_on_commit = real.expire_on_commit
    real.expire_on_commit = False
    try:
        real.commit()
    finally:
        real.expire_on_commit = expire_on_commit
