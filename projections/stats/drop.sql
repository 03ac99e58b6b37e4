DROP TABLE IF EXISTS usage_daily;
DROP TABLE IF EXISTS usage_user_days;
DROP TABLE IF EXISTS usage_daily_kinds;
