-- steward: no-transaction
-- Built concurrently so invoices stay writable while the index builds.
create index concurrently if not exists invoices_status_idx on invoices (account_id, status);
