alter table invoices drop column due_at;
