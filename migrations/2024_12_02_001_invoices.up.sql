-- Invoices: what an account is billed. Amounts in minor units to avoid float rounding.
create table invoices (
    id            uuid primary key default gen_random_uuid(),
    account_id    uuid not null references accounts (id) on delete restrict,
    number        text not null,
    amount_cents  bigint not null check (amount_cents >= 0),
    currency      char(3) not null default 'EUR',
    status        text not null default 'draft' check (status in ('draft', 'open', 'paid', 'void')),
    issued_at     timestamptz,
    unique (account_id, number)
);

create index invoices_account_id_idx on invoices (account_id);

alter table invoices enable row level security;

create policy invoices_isolation on invoices
    using (account_id = nullif(current_setting('app.account_id', true), '')::uuid);
