-- Members: people who belong to an account, with a role.
create table members (
    id          uuid primary key default gen_random_uuid(),
    account_id  uuid not null references accounts (id) on delete cascade,
    email       text not null,
    role        text not null default 'member' check (role in ('owner', 'admin', 'member')),
    created_at  timestamptz not null default now(),
    unique (account_id, email)
);

create index members_account_id_idx on members (account_id);

alter table members enable row level security;

create policy members_isolation on members
    using (account_id = nullif(current_setting('app.account_id', true), '')::uuid);
