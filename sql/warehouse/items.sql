create table if not exists items (
    item_id varchar primary key,
    title varchar,
    category varchar,
    price double,
    text varchar,
    updated_at timestamp not null,
)
