// Follows one leased server connection's transaction from the messages that pass through it,
// with no I/O: what the server still owes, and the one definition of when it may go back.
#pragma once

#include <cstdint>

#include "wire/messages.h"

namespace shardyard::pool {

// Contract: the session feeds it every message it forwards to the server (OnForwarded) and the
// server's ReadyForQuery and CopyInResponse (the pump sees them); it answers whether the
// server may go back to the pool (Releasable) and what a reset must settle (ResetState).
class TxTracker {
 public:
  using TxStatus = wire::be::TxStatus;

  // A server just lent: it owes nothing, and its transaction stands at `status`.
  void Restart(TxStatus status = TxStatus::kIdle) {
    pending_ready_ = 0;
    status_ = status;
    unsynced_ = false;
    copy_in_ = false;
  }

  // A client message of `type` went to the server.
  void OnForwarded(char type) {
    switch (type) {
      case 'Q':  // Query
      case 'F':  // FunctionCall
        ++pending_ready_;
        break;
      case 'S':  // Sync: ends the extended-protocol run; its ReadyForQuery is owed
        ++pending_ready_;
        unsynced_ = false;
        break;
      case 'd':  // CopyData, CopyDone, CopyFail: the COPY's Query already counted
      case 'c':
      case 'f':
        break;
      default:  // Parse, Bind, Describe, Execute, Close, Flush: nothing ends before a Sync
        unsynced_ = true;
        break;
    }
  }

  // The server sent ReadyForQuery with `status`.
  void OnReadyForQuery(TxStatus status) {
    if (pending_ready_ > 0) --pending_ready_;
    status_ = status;
    copy_in_ = false;
  }
  // The server sent CopyInResponse: it waits for the client's COPY data.
  void OnCopyInResponse() { copy_in_ = true; }

  // Nothing owed: every request forwarded has had its ReadyForQuery, and no extended-protocol
  // message waits for a Sync.
  bool Quiet() const { return pending_ready_ == 0 && !unsynced_; }
  // The one definition of "may go back to the pool": nothing owed, and no transaction open.
  // (The caller adds what only it knows: the relay is at a message boundary, the pool mode.)
  bool Releasable() const { return Quiet() && status_ == TxStatus::kIdle; }
  // Quiet, inside a transaction block (open or failed): the client holds the server between
  // requests.
  bool IdleInTransaction() const { return Quiet() && status_ != TxStatus::kIdle; }

  int pending_ready() const { return pending_ready_; }
  bool unsynced() const { return unsynced_; }
  bool copy_in() const { return copy_in_; }
  TxStatus status() const { return status_; }

 private:
  int32_t pending_ready_ = 0;  // ReadyForQuery messages owed for requests forwarded
  TxStatus status_ = TxStatus::kIdle;
  bool unsynced_ = false;  // extended-protocol messages forwarded since the last Sync
  bool copy_in_ = false;   // the server waits for COPY data
};

}  // namespace shardyard::pool
