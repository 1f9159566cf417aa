CLUSTER orders USING orders_pkey;
