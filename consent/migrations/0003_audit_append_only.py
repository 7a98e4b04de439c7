"""The audit table is append-only in the database itself (PostgreSQL): UPDATE and DELETE raise."""

from typing import Any

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION consent_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'the audit trail is append-only: % of an audit event is refused', TG_OP;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER consent_auditevent_append_only BEFORE UPDATE OR DELETE ON consent_auditevent
  FOR EACH ROW EXECUTE FUNCTION consent_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS consent_auditevent_append_only ON consent_auditevent;
DROP FUNCTION IF EXISTS consent_audit_append_only();
"""


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("consent", "0002_one_consent_in_force")]
    operations = [migrations.RunPython(forwards, backwards)]
