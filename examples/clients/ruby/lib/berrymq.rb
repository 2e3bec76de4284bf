# frozen_string_literal: true

# berryMQ for Ruby: identifiers with wildcards, push receivers (blocks and
# BerryMQ::Follower classes), pull queues, and the three connection styles to a berryMQ
# node over TCP or HTTP (JSON-RPC 2.0, docs/protocol.md). Standard library only.
#
#   require "berrymq"
#
#   BerryMQ.following_function("*:log") { |message| puts message.args.first }
#   BerryMQ.twitter("job:log", "started")
#
#   BerryMQ.connect_oneway("tcp://127.0.0.1:7000")
#   BerryMQ.send_message("job:done", "report.txt", pages: 3)
module BerryMQ
  # The longest one wait lasts, in seconds (about 146 years, as berrymq.timeouts.LONGEST_WAIT
  # on the Python side): a longer timeout (1e19, 10**400) waits this long, since a clock
  # cannot be told to wait further.
  LONGEST_WAIT = 4_611_686_018

  # Seconds on the monotonic clock (deadlines are measured on it).
  def self.monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # +value+ as the seconds a call waits: a finite number >= 0 (or nil, no limit, when
  # +nil_ok+), at most LONGEST_WAIT (an Integer stays one, other numbers become Floats).
  # Raises ArgumentError naming +name+ (the parameter, "get: timeout") for anything else:
  # NaN, Infinity, a negative number, a String.
  def self.wait_seconds(value, name, nil_ok: false)
    return nil if value.nil? && nil_ok
    if value.is_a?(Numeric) && value.real? && value.finite? && value >= 0
      return LONGEST_WAIT if value > LONGEST_WAIT

      return value.is_a?(Integer) ? value : value.to_f
    end

    raise ArgumentError, "#{name} must be a finite number of seconds >= 0#{nil_ok ? ' or nil' : ''}, " \
                         "got #{value.inspect}"
  end

  # Waits on +cond+ (with +lock+ held) until the block is true; false when +deadline+
  # (monotonic seconds; nil: none) came first.
  def self.wait_for(cond, lock, deadline)
    until yield
      return false if deadline && deadline <= monotonic

      deadline ? cond.wait(lock, [deadline - monotonic, LONGEST_WAIT].min) : cond.wait(lock)
    end
    true
  end
end

require "json"
require_relative "berrymq/version"
require_relative "berrymq/errors"
require_relative "berrymq/identifier"
require_relative "berrymq/message"
require_relative "berrymq/subscription"
require_relative "berrymq/bus"
require_relative "berrymq/follower"
require_relative "berrymq/queue"
require_relative "berrymq/jsonrpc"
require_relative "berrymq/outbox"
require_relative "berrymq/tcp_channel"
require_relative "berrymq/http_channel"
require_relative "berrymq/connection"
require_relative "berrymq/api"
