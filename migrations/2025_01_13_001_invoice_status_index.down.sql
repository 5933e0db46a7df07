-- steward: no-transaction
drop index concurrently if exists invoices_status_idx;
