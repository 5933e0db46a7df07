drop policy if exists invoices_isolation on invoices;
drop table invoices;
