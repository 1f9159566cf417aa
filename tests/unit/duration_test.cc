// Checks the duration and size grammar used by config files.
#include "common/duration.h"

#include <gtest/gtest.h>

namespace shardyard {
namespace {

using namespace std::chrono_literals;

TEST(DurationTest, ParsesEveryUnit) {
  EXPECT_EQ(*ParseDuration("250ms"), 250ms);
  EXPECT_EQ(*ParseDuration("5s"), 5s);
  EXPECT_EQ(*ParseDuration("2m"), 2min);
  EXPECT_EQ(*ParseDuration("1h"), 1h);
  EXPECT_EQ(*ParseDuration("1d"), 24h);
  EXPECT_EQ(*ParseDuration("10us"), 10us);
  EXPECT_EQ(*ParseDuration("0"), 0s);
  EXPECT_EQ(*ParseDuration(" 3s "), 3s);
}

TEST(DurationTest, RejectsMissingOrUnknownUnitsAndNegatives) {
  EXPECT_FALSE(ParseDuration("5").ok());
  EXPECT_FALSE(ParseDuration("5 parsecs").ok());
  EXPECT_FALSE(ParseDuration("-5s").ok());
  EXPECT_FALSE(ParseDuration("s").ok());
  EXPECT_FALSE(ParseDuration("99999999999999999999s").ok());
}

TEST(DurationTest, FormatsTheShortestExactUnit) {
  EXPECT_EQ(FormatDuration(0s), "0s");
  EXPECT_EQ(FormatDuration(1500ms), "1500ms");
  EXPECT_EQ(FormatDuration(120s), "2m");
  EXPECT_EQ(FormatDuration(3600s), "1h");
}

TEST(ByteSizeTest, ParsesUnits) {
  EXPECT_EQ(*ParseByteSize("1024"), 1024);
  EXPECT_EQ(*ParseByteSize("64MB"), int64_t{64} << 20);
  EXPECT_EQ(*ParseByteSize("8kB"), 8192);
  EXPECT_EQ(*ParseByteSize("1GB"), int64_t{1} << 30);
  EXPECT_FALSE(ParseByteSize("5 bananas").ok());
}

}  // namespace
}  // namespace shardyard
