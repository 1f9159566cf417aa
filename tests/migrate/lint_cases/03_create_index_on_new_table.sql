CREATE TABLE invoices (id bigint PRIMARY KEY, total numeric);
CREATE INDEX invoices_total_idx ON invoices (total);
