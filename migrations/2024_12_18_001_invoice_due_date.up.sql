-- Expand step: a nullable column the old code ignores, so it is safe before the deploy.
alter table invoices add column due_at timestamptz;
