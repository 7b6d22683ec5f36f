"""Alembic migrations of the service database, shipped inside the package.

Run them with `slimformer db upgrade` (or `slimformer.store.schema.upgrade(url)`). The version
is kept in its own table, `slimformer_alembic_version`, because Optuna's RDB storage may share the
database and keeps its own `alembic_version`.
"""

VERSION_TABLE = "slimformer_alembic_version"
