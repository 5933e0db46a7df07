select relrowsecurity from pg_class where relname = 'invoices';
