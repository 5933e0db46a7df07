select count(*) = 1 from pg_policies where tablename = 'members';
