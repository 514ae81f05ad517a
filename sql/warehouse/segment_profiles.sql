-- Published: what each segment is, for people: size, label, top categories and items, and the numbers
-- behind the label.
create table if not exists segment_profiles (
    segment_id integer not null,
    size bigint not null,
    share double not null,
    label varchar not null,
    top_categories varchar[],
    top_items varchar[],
    median_events double,
    purchase_share double,
    view_to_cart double,
    cart_to_purchase double,
    mean_rating double,
    peak_daypart varchar,
    weekend_share double,
    run_id varchar not null,
)
