drop policy if exists accounts_isolation on accounts;
drop table accounts;
