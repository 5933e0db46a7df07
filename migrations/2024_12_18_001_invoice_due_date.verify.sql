select exists (
    select 1 from information_schema.columns
    where table_name = 'invoices' and column_name = 'due_at'
);
