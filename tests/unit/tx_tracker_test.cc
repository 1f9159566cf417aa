// Tests the transaction tracker: what a leased server owes from the messages that pass, and the
// one rule for when it may go back to the pool.
#include "pool/tx_tracker.h"

#include <gtest/gtest.h>

#include <string_view>

namespace shardyard::pool {
namespace {

using TxStatus = wire::be::TxStatus;

// Feeds each client message type in `types` (one character each) to the tracker.
void Forward(TxTracker& t, std::string_view types) {
  for (char c : types) t.OnForwarded(c);
}

TEST(TxTrackerTest, AFreshLeaseOwesNothingAndMayGoBack) {
  TxTracker t;
  EXPECT_TRUE(t.Quiet());
  EXPECT_TRUE(t.Releasable());
  t.Restart(TxStatus::kInTransaction);  // a session-mode server lent inside a block
  EXPECT_TRUE(t.Quiet());
  EXPECT_FALSE(t.Releasable());
  EXPECT_TRUE(t.IdleInTransaction());
}

TEST(TxTrackerTest, ASimpleQueryIsOwedUntilItsReadyForQuery) {
  TxTracker t;
  Forward(t, "Q");
  EXPECT_FALSE(t.Releasable());
  EXPECT_EQ(t.pending_ready(), 1);
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_TRUE(t.Releasable());
}

TEST(TxTrackerTest, ExtendedMessagesWithoutSyncHoldTheServer) {
  TxTracker t;
  Forward(t, "PBDE");
  EXPECT_TRUE(t.unsynced());
  EXPECT_EQ(t.pending_ready(), 0);
  EXPECT_FALSE(t.Releasable()) << "the Sync that ends the run has not come";
  Forward(t, "S");
  EXPECT_FALSE(t.unsynced());
  EXPECT_FALSE(t.Releasable());
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_TRUE(t.Releasable());
}

TEST(TxTrackerTest, AFlushAloneKeepsTheRunOpen) {
  TxTracker t;
  Forward(t, "PBEH");  // a driver reading results before its Sync
  EXPECT_TRUE(t.unsynced());
  EXPECT_FALSE(t.Releasable());
}

TEST(TxTrackerTest, PipelinedSyncsAreEachOwedAReadyForQuery) {
  TxTracker t;
  Forward(t, "PBESPBESPBES");
  EXPECT_EQ(t.pending_ready(), 3);
  t.OnReadyForQuery(TxStatus::kIdle);
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_FALSE(t.Releasable()) << "one ReadyForQuery still owed";
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_TRUE(t.Releasable());
}

TEST(TxTrackerTest, AnErrorMidPipelineStillEndsInOneReadyForQueryPerSync) {
  // PostgreSQL skips to the Sync after an error, then answers it: the count is unchanged.
  TxTracker t;
  Forward(t, "PBEPBES");
  EXPECT_EQ(t.pending_ready(), 1);
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_TRUE(t.Releasable());
}

TEST(TxTrackerTest, ATransactionBlockHoldsTheServerUntilItEnds) {
  TxTracker t;
  Forward(t, "Q");  // BEGIN
  t.OnReadyForQuery(TxStatus::kInTransaction);
  EXPECT_TRUE(t.Quiet());
  EXPECT_TRUE(t.IdleInTransaction());
  EXPECT_FALSE(t.Releasable());
  Forward(t, "Q");  // a failing statement
  t.OnReadyForQuery(TxStatus::kFailed);
  EXPECT_FALSE(t.Releasable()) << "a failed block is still open";
  Forward(t, "Q");  // ROLLBACK
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_TRUE(t.Releasable());
}

TEST(TxTrackerTest, CopyInWaitsForTheClientsDataThenTheReadyForQuery) {
  TxTracker t;
  Forward(t, "Q");  // COPY t FROM STDIN
  t.OnCopyInResponse();
  EXPECT_TRUE(t.copy_in());
  Forward(t, "dddc");  // CopyData, CopyDone: owed nothing more
  EXPECT_EQ(t.pending_ready(), 1);
  EXPECT_FALSE(t.unsynced());
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_FALSE(t.copy_in());
  EXPECT_TRUE(t.Releasable());
}

TEST(TxTrackerTest, CopyFailEndsTheCopyWithAnErrorAndOneReadyForQuery) {
  TxTracker t;
  Forward(t, "Q");
  t.OnCopyInResponse();
  Forward(t, "df");
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_TRUE(t.Releasable());
  EXPECT_FALSE(t.copy_in());
}

TEST(TxTrackerTest, AFunctionCallIsOwedItsReadyForQuery) {
  TxTracker t;
  Forward(t, "F");
  EXPECT_FALSE(t.Releasable());
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_TRUE(t.Releasable());
}

TEST(TxTrackerTest, AnUnexpectedReadyForQueryNeverMakesTheCountNegative) {
  TxTracker t;
  t.OnReadyForQuery(TxStatus::kIdle);
  EXPECT_EQ(t.pending_ready(), 0);
  Forward(t, "Q");
  EXPECT_FALSE(t.Releasable()) << "the Query's own ReadyForQuery is still owed";
}

TEST(TxTrackerTest, RestartForgetsWhatTheLastLeaseOwed) {
  TxTracker t;
  Forward(t, "PBEQ");
  t.OnCopyInResponse();
  t.Restart();
  EXPECT_EQ(t.pending_ready(), 0);
  EXPECT_FALSE(t.unsynced());
  EXPECT_FALSE(t.copy_in());
  EXPECT_TRUE(t.Releasable());
}

}  // namespace
}  // namespace shardyard::pool
