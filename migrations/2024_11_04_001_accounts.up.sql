-- Accounts: one row per customer organisation of the app.
create table accounts (
    id          uuid primary key default gen_random_uuid(),
    name        text not null check (length(name) between 1 and 200),
    plan        text not null default 'free' check (plan in ('free', 'pro', 'enterprise')),
    created_at  timestamptz not null default now()
);

alter table accounts enable row level security;

-- The app sets app.account_id per request; a session only ever sees its own account.
create policy accounts_isolation on accounts
    using (id = nullif(current_setting('app.account_id', true), '')::uuid);
