# frozen_string_literal: true

# The local bus (no node): receivers, Follower classes, messages, queues, ask, errors.
require_relative "test_helper"

# The sample of the original product, exactly.
class SampleLogger
  include BerryMQ::Follower

  attr_reader :seen

  def initialize(seen = [])
    @seen = seen
  end

  following("*:log")
  def receive_log(message)
    @seen << message.id
  end
end

# A logger that keeps its lines (BerryMQ.logger takes any object with #warn and #error).
class LinesLog
  attr_reader :lines

  def initialize
    @lines = []
  end

  def warn(text)
    @lines << "warn: #{text}"
  end

  def error(text)
    @lines << "error: #{text}"
  end
end

class TestBus < Minitest::Test
  include FreshBus

  def test_twitter_reaches_matching_receivers_in_registration_order
    got = []
    BerryMQ.following_function("task:*") { |m| got << [:first, m.id] }
    BerryMQ.following_function("*:run") { |m| got << [:second, m.id] }
    BerryMQ.following_function("other:run", guard: ->(_m) { raise "not matched, not called" }) { nil }
    BerryMQ.twitter("task:run")
    BerryMQ.twitter("task:stop")
    assert_equal [[:first, "task:run"], [:second, "task:run"], [:first, "task:stop"]], got
  end

  def test_wildcard_sender_reaches_every_name
    got = []
    BerryMQ.following_function("a:stop") { |m| got << "a got #{m.id}" }
    BerryMQ.following_function("b:stop") { |m| got << "b got #{m.id}" }
    BerryMQ.following_function("b:go") { |m| got << "never #{m.id}" }
    BerryMQ.twitter("*:stop")
    assert_equal ["a got *:stop", "b got *:stop"], got
  end

  def test_namespaces_partition_the_bus
    got = []
    BerryMQ.following_function("job@ops:*") { |m| got << [m.id, m.namespace] }
    BerryMQ.following_function("*") { |m| got << [m.id, m.namespace] }
    BerryMQ.twitter("job@ops:go")
    BerryMQ.twitter("job:go")
    assert_equal [["job:go", "ops"], ["job:go", nil]], got
  end

  def test_message_attributes
    got = nil
    BerryMQ.following_function("job@ops:done") { |m| got = m }
    BerryMQ.twitter("job@ops:done", "report.txt", 3, user: "bob")
    assert_equal ["job:done", "job", "done", "ops"], [got.id, got.name, got.action, got.namespace]
    assert_equal ["report.txt", 3], got.args
    assert_equal({ user: "bob" }, got.kwargs)
    assert_equal "bob", got.user
    assert_raises(NoMethodError) { got.nobody }
    assert_predicate got.args, :frozen?
    assert_predicate got.kwargs, :frozen?
    assert_equal "bob!", got.apply(->(user:) { "#{user}!" })
  end

  def test_guard_skips_messages
    got = []
    BerryMQ.following_function("n:*", guard: ->(m) { m.args.first.even? }) { |m| got << m.args.first }
    (1..4).each { |i| BerryMQ.twitter("n:x", i) }
    assert_equal [2, 4], got
  end

  def test_cancel_and_unfollow
    got = []
    sub = BerryMQ.following_function("c:*") { |m| got << m.id }
    callable = ->(m) { got << "callable #{m.id}" }
    BerryMQ.regist_function("c:*", callable)
    BerryMQ.twitter("c:one")
    sub.cancel
    BerryMQ.twitter("c:two")
    assert_equal 1, BerryMQ.unfollow(callable)
    BerryMQ.twitter("c:three")
    assert_equal ["c:one", "callable c:one", "callable c:two"], got
  end

  def test_follower_sample_registers_instances_on_creation
    logger = SampleLogger.new
    BerryMQ.twitter("do_something:log", "started")
    BerryMQ.twitter("do_something:other")
    assert_equal ["do_something:log"], logger.seen
    second = SampleLogger.new
    BerryMQ.twitter("x:log")
    assert_equal ["do_something:log", "x:log"], logger.seen
    assert_equal ["x:log"], second.seen
    assert_equal 1, logger.unfollow
    BerryMQ.twitter("y:log")
    assert_equal ["do_something:log", "x:log"], logger.seen
    logger.follow
    BerryMQ.twitter("z:log")
    assert_equal "z:log", logger.seen.last
  end

  def test_follower_guard_stacking_inheritance_and_class_methods
    klass = Class.new do
      include BerryMQ::Follower
      attr_reader :got

      def initialize(level)
        @level = level
        @got = []
      end

      following("alarm:*") { |m| m.args.first >= @level } # runs in the instance
      def on_alarm(message)
        @got << [:alarm, message.args.first]
      end

      following("a:x")
      following("b:x")
      def on_two(message)
        @got << [:two, message.id]
      end

      following("cls:*")
      def self.on_class(message)
        (@class_got ||= []) << message.id
      end

      def self.class_got
        @class_got
      end
    end
    sub = Class.new(klass) do
      following("sub:*", :on_sub)
      def on_sub(message)
        @got << [:sub, message.id]
      end
    end
    high = klass.new(5)
    child = sub.new(0)
    BerryMQ.twitter("alarm:fire", 3)
    BerryMQ.twitter("alarm:fire", 7)
    BerryMQ.twitter("a:x")
    BerryMQ.twitter("b:x")
    BerryMQ.twitter("sub:y")
    BerryMQ.twitter("cls:z")
    assert_equal [[:alarm, 7], [:two, "a:x"], [:two, "b:x"]], high.got
    assert_equal [[:alarm, 3], [:alarm, 7], [:two, "a:x"], [:two, "b:x"], [:sub, "sub:y"]], child.got
    assert_equal ["cls:z"], klass.class_got
  end

  def test_follower_instances_are_held_weakly
    counter = []
    # Made in another thread, whose stack is gone when it ends: nothing refers to them.
    Thread.new { 50.times { SampleLogger.new(counter) } }.join
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    GC.start(full_mark: true, immediate_sweep: true) while BerryMQ.bus.subscriptions.size == 50 &&
                                                         Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
    GC.disable
    alive = BerryMQ.bus.subscriptions.size
    assert_operator alive, :<, 50, "garbage collection freed no Follower instance"
    BerryMQ.twitter("gc:log")
    assert_equal alive, counter.size # only the living ones received
  ensure
    GC.enable
  end

  def test_receiver_errors_are_raised_after_every_receiver_ran
    got = []
    BerryMQ.following_function("e:*") { |_m| raise ArgumentError, "first" }
    BerryMQ.following_function("e:*") { |m| got << m.id }
    error = assert_raises(BerryMQ::ReceiverErrors) { BerryMQ.twitter("e:x") }
    assert_equal ["e:x"], got
    assert_equal [ArgumentError], error.errors.map(&:class)
    assert_includes error.message, "ArgumentError: first"
  end

  def test_receiver_errors_are_logged_by_default
    log = LinesLog.new
    BerryMQ.raise_errors = false
    BerryMQ.logger = log
    BerryMQ.following_function("e:*") { |_m| raise "boom on purpose" }
    BerryMQ.twitter("e:x")
    assert_equal 1, log.lines.size
    assert_match(/\Aerror: a receiver raised RuntimeError: boom on purpose\n/, log.lines.first)
  end

  def test_endless_loops_are_cut_with_a_warning
    log = LinesLog.new
    BerryMQ.logger = log
    count = 0
    BerryMQ.following_function("loop:*") do |m|
      count += 1
      BerryMQ.twitter(m.id)
    end
    BerryMQ.twitter("loop:go")
    assert_equal BerryMQ::Bus::HOP_LIMIT, count
    assert_equal 1, log.lines.size
    assert_includes log.lines.first, "warn: message loop:go dropped"
  end

  def test_ask_returns_the_receivers_replies
    BerryMQ.following_function("price:quote") { |m| m.args.first * 2 }
    BerryMQ.following_function("price:*") { |_m| raise "no price" }
    BerryMQ::Queue.new("price:*") # queues do not answer
    replies = BerryMQ.ask("price:quote", 21)
    assert_equal 42, replies.first
    assert_instance_of BerryMQ::ReplyError, replies.last
    assert_equal ["RuntimeError", "no price"], [replies.last.exception_type, replies.last.reason]
    assert_equal 2, replies.size
    assert_equal [], BerryMQ.ask("nobody:listens")
  end
end

# Stands in for an interconnection (the bus's side of forwarding is what is tested).
class RecordingLink
  attr_reader :got

  def initialize
    @got = []
  end

  def interconnected?
    true
  end

  def forward(message)
    @got << message
  end

  def close; end
end

# Stands in for a connection that asks a node: records the messages it was asked with.
class AskingLink
  attr_reader :asked

  def initialize(url)
    @url = url
    @asked = []
  end

  attr_reader :url

  def interconnected?
    false
  end

  def ask_message(message, _timeout)
    @asked << message
    [message.args.first * 2]
  end

  def close; end
end

# Stands in for a connection whose close waits (up to 10 s) until +count+ closes have
# begun: closes made one after another would each wait the whole time.
class SlowClosingLink
  attr_reader :url, :together

  def initialize(url, count, gate)
    @url = url
    @count = count
    @gate = gate # [Mutex, ConditionVariable, closes begun]
    @together = nil
  end

  def interconnected?
    false
  end

  def close
    return unless @together.nil?

    lock, cond, begun = @gate
    lock.synchronize do
      begun << self
      cond.broadcast
      @together = BerryMQ.wait_for(cond, lock, BerryMQ.monotonic + 10) { begun.size >= @count }
    end
  end
end

class TestForwarding < Minitest::Test
  include FreshBus

  # BerryMQ.ask asks every connection with one message, and so one uid (20 URL-safe
  # characters, the form a node gives: 8 of this process's, 12 random), so that a node
  # reached by several connections runs its receivers once; a new uid per ask.
  def test_an_ask_has_one_uid_for_every_connection
    links = [AskingLink.new("tcp://127.0.0.1:1"), AskingLink.new("http://127.0.0.1:1")]
    links.each { |link| BerryMQ.bus.track(link) }
    BerryMQ.following_function("q:x") { |m| m.args.first + 1 }
    assert_equal [4, 6, 6], BerryMQ.ask("q:x", 3)
    assert_equal [11, 20, 20], BerryMQ.ask("q:x", 10)
    assert_equal [[3, 10], [3, 10]], links.map { |link| link.asked.map { |m| m.args.first } }
    first, second = links.map { |link| link.asked.map(&:uid) }
    assert_equal first, second
    first.each { |uid| assert_match(/\A[A-Za-z0-9_-]{20}\z/, uid) }
    refute_equal first[0], first[1]
    assert_equal first[0][0, 8], first[1][0, 8] # this process's part
    refute BerryMQ.bus.first_sight?(first[0]) # its own: a node asking it back gets nothing
    BerryMQ.following_function("_q:x") { |m| m.args.first + 1 }
    assert_equal [1], BerryMQ.ask("_q:x", 0) # a local ask stays here
    assert_equal [2, 2], links.map { |link| link.asked.size }
  end

  # Closing several connections (BerryMQ.close_connection, and at exit or BerryMQ.reset
  # the bus) closes them side by side: each waits for its node at most
  # Connection::CLOSE_TIMEOUT, and so do all of them together.
  def test_connections_close_side_by_side
    [-> { BerryMQ.close_connection }, -> { BerryMQ.reset }].each do |close_all|
      gate = [Mutex.new, ConditionVariable.new, []]
      links = 3.times.map { |i| SlowClosingLink.new("tcp://127.0.0.1:#{i + 1}", 3, gate) }
      links.each { |link| BerryMQ.bus.track(link) }
      close_all.call
      assert_equal [true, true, true], links.map(&:together)
    end
  end

  def test_messages_are_forwarded_once_per_uid_and_never_back_to_their_origin
    bus = BerryMQ.bus
    a = RecordingLink.new
    b = RecordingLink.new
    bus.track(a)
    bus.track(b)
    got = []
    BerryMQ.following_function("*") { |m| got << [m.id, m.args] }
    BerryMQ.twitter("x:y", 1)
    BerryMQ.twitter("_local:y", 2) # local: delivered here only
    assert_equal [["x:y", [1]], ["_local:y", [2]]], got
    assert_equal 1, a.got.size
    own = a.got.first
    assert_equal [own.uid], b.got.map(&:uid)
    assert_match(/\A#{bus.node_id}-\d+\z/, own.uid)
    bus.receive(own, b) # our own message came back round a cycle: dropped
    from_a = BerryMQ::Message.new("p:q", [3], {}, uid: "peer-1", hops: 1)
    bus.receive(from_a, a)
    bus.receive(from_a, b) # the same uid by another way: delivered once
    assert_equal [["x:y", [1]], ["_local:y", [2]], ["p:q", [3]]], got
    assert_equal 1, a.got.size # not sent back to where it came from
    assert_equal [["peer-1", 1]], b.got.drop(1).map { |m| [m.uid, m.hops] }
  end

  def test_a_message_at_the_hop_limit_is_dropped_with_a_warning
    log = LinesLog.new
    BerryMQ.logger = log
    got = []
    BerryMQ.following_function("*") { |m| got << m }
    BerryMQ.bus.receive(BerryMQ::Message.new("far:away", [], {}, uid: "peer-9", hops: BerryMQ::Bus::HOP_LIMIT), nil)
    assert_empty got
    assert_equal 1, log.lines.size
    assert_includes log.lines.first, "far:away dropped"
  end
end

class TestQueue < Minitest::Test
  include FreshBus

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def test_fifo_of_matching_messages_sent_after_creation
    BerryMQ.twitter("task:before")
    queue = BerryMQ::Queue.new("task:*")
    other = BerryMQ::Queue.new("task:*") # standalone queues each get a copy
    BerryMQ.twitter("task:one", 1)
    BerryMQ.twitter("job:one")
    BerryMQ.twitter("task:two", 2)
    assert_equal 2, queue.size
    assert_equal [["task:one", [1]], ["task:two", [2]]], [queue.get, queue.get].map { |m| [m.id, m.args] }
    assert_equal 2, other.qsize
    assert_predicate queue, :empty?
  end

  def test_get_nowait_and_timeout_raise_empty
    queue = BerryMQ::Queue.new("t:*")
    assert_raises(BerryMQ::Empty) { queue.get_nowait }
    assert_raises(BerryMQ::Empty) { queue.get(block: false) }
    started = now
    error = assert_raises(BerryMQ::Empty) { queue.get(timeout: 0.2) }
    assert_operator now - started, :>=, 0.2
    assert_includes error.message, "t:*"
  end

  def test_get_waits_for_a_message_from_another_thread
    queue = BerryMQ::Queue.new("t:*")
    sender = Thread.new { BerryMQ.twitter("t:late", "x") }
    assert_equal ["x"], queue.get(timeout: 10).args
    sender.join
  end

  def test_a_full_queue_refuses_and_says_so
    queue = BerryMQ::Queue.new("f:*", maxsize: 2)
    BerryMQ.twitter("f:1")
    BerryMQ.twitter("f:2")
    assert_predicate queue, :full?
    error = assert_raises(BerryMQ::QueueFull) { BerryMQ.twitter("f:3") }
    assert_includes error.message, "f:3 was not stored"
    assert_equal %w[f:1 f:2], [queue.get_nowait.id, queue.get_nowait.id]
  end

  def test_close_stops_receiving
    queue = BerryMQ::Queue.new("c:*")
    BerryMQ.twitter("c:1")
    queue.close
    BerryMQ.twitter("c:2")
    assert_equal "c:1", queue.get.id
    assert_raises(BerryMQ::Empty) { queue.get } # closed and empty: no waiting
  end
end

class TestWithoutNode < Minitest::Test
  include FreshBus

  def test_send_message_without_a_connection_says_what_to_call
    error = assert_raises(BerryMQ::ConnectionClosed) { BerryMQ.send_message("a:b") }
    assert_includes error.message, "connect_oneway"
    error = assert_raises(BerryMQ::ConnectionClosed) { BerryMQ.get_nowait }
    assert_includes error.message, "connect_via_queue"
  end

  def test_addresses
    normalize = BerryMQ::Connection.method(:normalize)
    assert_equal ["http", "127.0.0.1", 8000, "http://127.0.0.1:8000"], normalize.call(["127.0.0.1", 8000])
    assert_equal ["tcp", "::1", 7000, "tcp://[::1]:7000"], normalize.call("tcp://[::1]:7000/")
    assert_raises(ArgumentError) { normalize.call("tcp://host") }
  end

  def test_bad_addresses_and_unreachable_nodes
    error = assert_raises(ArgumentError) { BerryMQ.connect_oneway("ftp://x:1") }
    assert_includes error.message, "tcp://host:port"
    server = TCPServer.new("127.0.0.1", 0)
    port = server.addr[1]
    server.close
    %w[tcp http].each do |scheme|
      error = assert_raises(BerryMQ::ConnectionClosed) { BerryMQ.connect_oneway("#{scheme}://127.0.0.1:#{port}") }
      assert_includes error.message, "cannot reach #{scheme}://127.0.0.1:#{port}"
    end
    assert_empty BerryMQ.connections
  end
end
