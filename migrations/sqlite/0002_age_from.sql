-- Start of a delivery's delivery.max_age window: its creation, or the last
-- manual retry, so that a retried dead letter is not expired at once while
-- created_at keeps the original time.
ALTER TABLE deliveries ADD COLUMN age_from INTEGER;
UPDATE deliveries SET age_from = created_at;
