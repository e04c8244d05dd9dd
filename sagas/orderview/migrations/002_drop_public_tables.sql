-- The read model moved into schema orderview, kept by the projection runtime with its positions beside
-- its rows (internal/projection) and built from the topics on first start; the tables that the consumer
-- group kept in public are no longer read.
DROP TABLE IF EXISTS public.orders, public.timeline;
