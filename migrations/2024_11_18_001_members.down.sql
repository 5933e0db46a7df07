drop policy if exists members_isolation on members;
drop table members;
