# frozen_string_literal: true

# The three styles and ask against a real berryMQ node, over TCP and over HTTP.
#
# tests/test_ruby_client.py starts a Python node and sets BERRYMQ_TCP_URL and
# BERRYMQ_HTTP_URL. The node has receivers: "double:*" returns twice args[0] (and raises
# on "boom"), "ruby:ping" twitters "ruby:pong" with the same arguments, and it collects
# every "ruby:*" message so that the Python side can check what arrived.
require_relative "test_helper"
require "net/http"

class TestRemote < Minitest::Test
  include FreshBus
  include Waiting

  URLS = { "tcp" => ENV.fetch("BERRYMQ_TCP_URL", nil), "http" => ENV.fetch("BERRYMQ_HTTP_URL", nil) }.freeze
  WAIT = 20

  # A Follower that hands what it receives to a queue the test reads.
  class Pong
    include BerryMQ::Follower

    def initialize(inbox)
      @inbox = inbox
    end

    following("ruby:pong")
    def receive_pong(message)
      @inbox.put(message)
    end
  end

  def url(scheme)
    URLS[scheme] || skip("BERRYMQ_#{scheme.upcase}_URL is not set (tests/test_ruby_client.py starts a node and sets it)")
  end

  %w[tcp http].each do |scheme|
    define_method("test_oneway_and_queue_#{scheme}") do
      node = url(scheme)
      queue = BerryMQ.connect_via_queue(node, "rb_job:*", ttl: 60)
      oneway = BerryMQ.connect_oneway(node, ttl: 60)
      oneway.send_message("rb_job:done", "report.txt", pages: 3)
      BerryMQ.send_message("rb_job:more", "ü", { "n" => [1, 2.5, nil, true] }) # the latest connection
      BerryMQ.send_message("ruby:oneway", scheme, 1, user: "bob") # the node collects it
      BerryMQ.send_message("other:x") # does not match the queue
      got = queue.get(timeout: WAIT)
      assert_equal ["rb_job:done", ["report.txt"], { pages: 3 }], [got.id, got.args, got.kwargs]
      got = BerryMQ.get(timeout: WAIT) # the latest queue connection
      assert_equal ["rb_job:more", ["ü", { "n" => [1, 2.5, nil, true] }], {}], [got.id, got.args, got.kwargs]
      assert_raises(BerryMQ::Empty) { BerryMQ.get_nowait }
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      assert_raises(BerryMQ::Empty) { queue.get(timeout: 0.3) }
      assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :>=, 0.3
      queue.send_message("rb_job:self", 7) # a queue session sends too
      assert_equal [7], queue.get(timeout: WAIT).args
      BerryMQ.close_connection(node)
      assert_empty BerryMQ.connections
      assert_raises(BerryMQ::ConnectionClosed) { queue.get_nowait }
    end

    define_method("test_interconnect_both_ways_#{scheme}") do
      node = url(scheme)
      inbox = BerryMQ::Queue.new("_inbox") # Pong puts here what it receives
      pong = Pong.new(inbox)
      BerryMQ.interconnect(node, ttl: 60)
      BerryMQ.twitter("ruby:ping", scheme, n: 7) # forwarded; the node's receiver answers ruby:pong
      BerryMQ.twitter("_local:ping", scheme) # local: never leaves this process
      BerryMQ.twitter("ruby:interconnect", scheme)
      assert BerryMQ.flush(WAIT), "the node did not acknowledge in time"
      got = inbox.get(timeout: WAIT)
      assert_equal ["ruby:pong", [scheme], { n: 7 }], [got.id, got.args, got.kwargs]
      refute_nil pong
      # messages that reach the node from elsewhere come here too
      other = BerryMQ::Connection.new(node, :oneway, ttl: 60)
      arrived = BerryMQ::Queue.new("news:*")
      other.send_message("news:flash", "hi", flag: true)
      got = arrived.get(timeout: WAIT)
      assert_equal ["news:flash", ["hi"], { flag: true }], [got.id, got.args, got.kwargs]
      other.close
      # send_message on the interconnection itself
      BerryMQ.send_message("ruby:ping", "direct")
      assert_equal ["direct"], inbox.get(timeout: WAIT).args
      BerryMQ.close_connection
      assert_raises(BerryMQ::ConnectionClosed) { BerryMQ.send_message("ruby:ping", "closed") }
    end

    define_method("test_ask_#{scheme}") do
      node = url(scheme)
      BerryMQ.following_function("double:it") { |m| "ruby's own: #{m.args.first}" }
      connection = BerryMQ.connect_oneway(node, ttl: 60)
      assert_equal ["ruby's own: 21", 42], BerryMQ.ask("double:it", 21, timeout: WAIT)
      replies = connection.ask("double:it", "boom", timeout: WAIT)
      assert_equal 1, replies.size
      assert_instance_of BerryMQ::ReplyError, replies.first
      assert_equal "RuntimeError", replies.first.exception_type
      assert_includes replies.first.reason, "boom on purpose"
      assert_equal [], connection.ask("nobody:listens", timeout: WAIT)
    end

    # BerryMQ.ask asks each connection with the same uid: a node reached by several of
    # them (of both transports, every style) runs its receivers once, as the Python
    # client's ask does; each ask has a uid of its own.
    define_method("test_ask_runs_a_node_s_receivers_once_#{scheme}") do
      node = url(scheme)
      other = url(scheme == "tcp" ? "http" : "tcp") # the same node, the other transport
      first = BerryMQ.connect_oneway(node, ttl: 60)
      BerryMQ.connect_via_queue(node, "once:*", ttl: 60)
      second = BerryMQ.connect_oneway(other, ttl: 60)
      BerryMQ.interconnect(node, ttl: 60)
      assert_equal 4, BerryMQ.connections.size
      assert_equal [42], BerryMQ.ask("double:it", 21, timeout: WAIT)
      assert_equal [8], BerryMQ.ask("double:it", 4, timeout: WAIT) # a new uid: asked again
      assert_equal [6], first.ask("double:it", 3, timeout: WAIT)
      assert_equal [6], first.ask("double:it", 3, timeout: WAIT)
      message = BerryMQ::Message.new("double:it", [5], {}, uid: BerryMQ.bus.new_uid)
      assert_equal [10], first.ask_message(message, WAIT)
      assert_equal [], second.ask_message(message, WAIT) # that uid was answered already
    end

    define_method("test_errors_name_the_problem_#{scheme}") do
      node = url(scheme)
      connection = BerryMQ.connect_oneway(node, ttl: 60)
      error = assert_raises(ArgumentError) { connection.send_message("_private:x") }
      assert_includes error.message, "local"
      # ask too: refused before anything is sent (the node would answer Invalid params)
      error = assert_raises(ArgumentError) { connection.ask("_private:x", 1, timeout: WAIT) }
      assert_equal "\"_private:x\" is a local identifier (its name starts with '_'); local messages never " \
                   "leave the process", error.message
      assert_equal [], BerryMQ.ask("_private:x", timeout: WAIT) # BerryMQ.ask asks this process only
      assert_raises(BerryMQ::InvalidIdentifier) { connection.send_message("te*:x") }
      error = assert_raises(ArgumentError) { connection.get_nowait }
      assert_includes error.message, "connect_via_queue"
      error = assert_raises(BerryMQ::RemoteError) { BerryMQ.connect_via_queue(node, "_local:*") }
      assert_equal BerryMQ::JSONRPC::CODES[:invalid_params], error.code
      error = assert_raises(ArgumentError) { BerryMQ.connect_oneway(node, ttl: 0) }
      assert_includes error.message, "ttl"
      error = assert_raises(BerryMQ::MessageTooLarge) { connection.send_message("big:x", "x" * 1_100_000) }
      assert_includes error.message, "it was not sent"
      assert_raises(ArgumentError) { connection.send_message("nan:x", Float::NAN) }
      assert_nil connection.send_message("after:big") # the connection is still usable
      connection.close
      error = assert_raises(BerryMQ::ConnectionClosed) { connection.send_message("closed:x") }
      assert_includes error.message, "closed"
    end
  end

  def nested(levels, inner = 1)
    levels.times.reduce(inner) { |value, _| [value] }
  end

  # Sends a message to the node as any client may (over HTTP, by hand), so that what it
  # holds does not depend on what this library sends. +args_json+: the args as JSON text
  # (one Ruby cannot generate, such as a lone surrogate's escape).
  def send_raw(identifier, args, args_json: JSON.generate(args, max_nesting: false))
    uri = URI(url("http"))
    post = lambda do |text|
      JSON.parse(Net::HTTP.post(uri, text, "Content-Type" => "application/json").body)
    end
    token = post.call(JSON.generate({ "jsonrpc" => "2.0", "method" => "connect_oneway", "params" => { "ttl" => 60 }, "id" => 1 }))["result"]
    answer = post.call(%({"jsonrpc":"2.0","method":"send_message","id":2,"params":{"token":#{JSON.generate(token)},) +
                       %("identifier":#{JSON.generate(identifier)},"args":#{args_json}}}))
    assert_equal "ok", answer["result"], answer.inspect
  end

  %w[tcp http].each do |scheme|
    # The protocol lets a message nest 124 levels ([identifier, args, kwargs] is level 1):
    # such a message is read whole (Ruby's JSON stops at 100 by default), and a deeper one
    # is refused before it is sent, naming the limit.
    define_method("test_messages_nested_as_deep_as_the_protocol_allows_#{scheme}") do
      node = url(scheme)
      deepest = nested(123) # args: 123 levels, the message 124
      queue = BerryMQ.connect_via_queue(node, "deep:*", ttl: 60)
      send_raw("deep:raw", deepest)
      started = BerryMQ.monotonic
      got = queue.get(timeout: WAIT)
      assert_equal ["deep:raw", deepest], [got.id, got.args]
      assert_operator BerryMQ.monotonic - started, :<, WAIT / 2
      queue.send_message("deep:own", *deepest)
      assert_equal deepest, queue.get(timeout: WAIT).args
      [[nested(124), {}], [[], { k: nested(123) }]].each do |args, kwargs|
        error = assert_raises(ArgumentError) { queue.send_message("deep:too", *args, **kwargs) }
        assert_includes error.message, "more than 124 levels deep"
      end
      error = assert_raises(ArgumentError) { queue.ask("deep:too", *nested(124), timeout: WAIT) }
      assert_includes error.message, "more than 124 levels deep"
      assert_raises(BerryMQ::Empty) { queue.get_nowait } # nothing too deep was sent
      # an interconnection takes such a message from the node and stays open
      BerryMQ.interconnect(node, ttl: 60)
      arrived = BerryMQ::Queue.new("deepi:*")
      send_raw("deepi:raw", deepest)
      assert_equal deepest, arrived.get(timeout: WAIT).args
      send_raw("deepi:after", [1])
      assert_equal "deepi:after", arrived.get(timeout: WAIT).id
      assert_equal 2, BerryMQ.connections.size # none was lost
      error = assert_raises(ArgumentError) { BerryMQ.twitter("deepi:too", *nested(124)) }
      assert_includes error.message, "more than 124 levels deep"
    end

    # A text holding a lone surrogate (another client sent "a\ud800b"; the node forwards it
    # as that escape, which a Ruby String cannot hold) is read with U+FFFD in its place:
    # the message is taken, and so are the later ones. A pair is still one character.
    define_method("test_a_lone_surrogate_is_read_as_the_replacement_character_#{scheme}") do
      node = url(scheme)
      queue = BerryMQ.connect_via_queue(node, "sur:*", ttl: 60)
      interconnection = BerryMQ.interconnect(node, ttl: 60)
      arrived = BerryMQ::Queue.new("sur:*")
      sent = '["a\ud800b", "\udc00", "\ud83d\ude00", "\\\\ud800", "\ud800\ud800\udc00"]'
      read = ["a\uFFFDb", "\uFFFD", "\u{1F600}", "\\ud800", "\uFFFD\u{10000}"]
      send_raw("sur:lone", nil, args_json: sent)
      send_raw("sur:after", [1])
      [queue, arrived].each do |from| # the node's queue; what the interconnection brought
        got = 2.times.map { from.get(timeout: WAIT) }
        assert_equal [["sur:lone", read], ["sur:after", [1]]], got.map { |m| [m.id, m.args] }
      end
      refute interconnection.closed?
      send_raw("sur:later", [2])
      assert_equal [2], arrived.get(timeout: WAIT).args
      assert_equal 2, BerryMQ.connections.size # none was lost
    end

    # A timeout longer than any clock waits (1e19 s, 10**400 s) waits as long as one can
    # (BerryMQ::LONGEST_WAIT); one that is no finite number is refused, naming the parameter.
    define_method("test_timeouts_longer_than_a_clock_waits_#{scheme}") do
      node = url(scheme)
      [1e19, 10**400].each do |long|
        queue = BerryMQ.connect_via_queue(node, "long:*", ttl: 60, timeout: long)
        assert_equal [4], queue.ask("double:it", 2, timeout: long)
        assert_equal [4], BerryMQ.ask("double:it", 2, timeout: long)
        getter = Thread.new { queue.get(timeout: long) }
        eventually("the get waits") { getter.status == "sleep" }
        queue.send_message("long:x", 1)
        assert_equal [1], getter.value.args
        local = BerryMQ::Queue.new("here:*")
        getter = Thread.new { local.get(timeout: long) }
        eventually("the local get waits") { getter.status == "sleep" }
        BerryMQ.twitter("here:x", 2)
        assert_equal [2], getter.value.args
        BerryMQ.interconnect(node, ttl: 60)
        BerryMQ.twitter("long:y", 3)
        assert BerryMQ.flush(long)
        assert_equal [3], queue.get(timeout: long).args
        BerryMQ.reset
      end
      queue = BerryMQ.connect_via_queue(node, "long:*", ttl: 60)
      [Float::INFINITY, -Float::INFINITY, Float::NAN, -1, "1", Complex(1, 1)].each do |bad|
        { "ask: timeout" => -> { queue.ask("double:it", 2, timeout: bad) },
          "get: timeout" => -> { queue.get(timeout: bad) },
          "flush: timeout" => -> { queue.flush(bad) },
          "timeout" => -> { BerryMQ.connect_oneway(node, timeout: bad) },
          "ttl" => -> { BerryMQ.connect_oneway(node, ttl: bad) } }.each do |name, call|
          error = assert_raises(ArgumentError, "#{name} #{bad.inspect}", &call)
          assert error.message.start_with?("#{name} must be a "), error.message
          assert_includes error.message, "finite number of seconds"
        end
      end
    end

    # Closing a connection while another thread's get waits at the node: that get raises
    # ConnectionClosed, as every later call does (the node ends the session, and answers
    # the get it was running Unknown or expired token).
    define_method("test_close_while_a_get_waits_#{scheme}") do
      node = url(scheme)
      queue = BerryMQ.connect_via_queue(node, "closing:*", ttl: 60)
      getter = get_in_thread(queue)
      # sent, and waiting for the answer: in Waiter#wait (TCP) or reading it (HTTP)
      eventually("the get waits for the node") do
        getter.status == "sleep" && getter.backtrace.to_a.any? { |line| line.match?(/jsonrpc\.rb:\d+:in `wait'|rbuf_fill/) }
      end
      queue.close
      assert_instance_of BerryMQ::ConnectionClosed, getter.value
      assert_includes getter.value.message, "closed"
      assert_raises(BerryMQ::ConnectionClosed) { queue.get_nowait }
    end

    # Values that are not JSON are refused, not sent as their #to_s.
    define_method("test_values_that_are_not_json_are_refused_#{scheme}") do
      node = url(scheme)
      queue = BerryMQ.connect_via_queue(node, "nj:*", ttl: 60)
      [Object.new, :sym, Time.at(0), { 1 => 2 }, "\xff"].each do |bad|
        error = assert_raises(ArgumentError, bad.inspect) { queue.send_message("nj:x", bad) }
        assert_includes error.message, "cannot be sent as JSON"
        assert_raises(ArgumentError, bad.inspect) { queue.send_message("nj:x", ok: [bad]) }
        assert_raises(ArgumentError, bad.inspect) { queue.ask("nj:x", bad, timeout: WAIT) }
      end
      assert_raises(BerryMQ::Empty) { queue.get_nowait }
      queue.send_message("nj:ok", { "s" => 1, t: [2] }, k: nil) # Symbol keys are sent as names
      got = queue.get(timeout: WAIT)
      assert_equal [[{ "s" => 1, "t" => [2] }], { k: nil }], [got.args, got.kwargs]
      # an identifier of another encoding is sent as UTF-8; one that does not convert is refused
      queue.send_message("nj:caf\xe9".dup.force_encoding("ISO-8859-1"), 1)
      queue.send_message("nj:x".encode("UTF-16LE"), 2)
      assert_equal [["nj:café", [1]], ["nj:x", [2]]], 2.times.map { m = queue.get(timeout: WAIT); [m.id, m.args] }
      error = assert_raises(BerryMQ::InvalidIdentifier) { queue.send_message("nj:\xff".b) }
      assert_includes error.message, "does not convert from ASCII-8BIT to UTF-8"
    end

    # Over TCP the node runs at most 16 calls that wait (max_waiting) per connection and
    # refuses more; the library keeps the rest waiting their turn, as over HTTP.
    define_method("test_more_waiting_calls_than_the_node_runs_at_once_#{scheme}") do
      node = url(scheme)
      queue = BerryMQ.connect_via_queue(node, "many:*", ttl: 60)
      getters = 20.times.map { Thread.new { queue.get(timeout: WAIT) } }
      20.times { |i| queue.send_message("many:x", i) }
      assert_equal (0...20).to_a, getters.map { |t| t.value.args.first }.sort
      asks = 20.times.map { |i| Thread.new { queue.ask("double:it", i, timeout: WAIT) } }
      assert_equal (0...20).map { |i| [2 * i] }, asks.map(&:value)
      next unless scheme == "tcp"

      # a call waiting its turn keeps its own timeout
      channel = queue.instance_variable_get(:@channel)
      busy = 16.times.map { Thread.new { queue.get(timeout: WAIT) } }
      eventually("16 gets sent") { channel.waiting_calls == [16, 0] }
      started = BerryMQ.monotonic
      error = assert_raises(BerryMQ::Empty) { queue.get(timeout: 0.3) }
      assert_includes error.message, "within 0.3 s"
      assert_operator BerryMQ.monotonic - started, :<, WAIT / 2
      assert_raises(BerryMQ::TransportError) { queue.ask("double:it", 1, timeout: 0.3) }
      replies = BerryMQ.ask("double:it", 1, timeout: 0.3) # the connection's failure, in its place
      assert_instance_of BerryMQ::ReplyError, replies.first
      16.times { |i| queue.send_message("many:y", i) }
      assert_equal (0...16).to_a, busy.map { |t| t.value.args.first }.sort
      assert_equal [0, 0], channel.waiting_calls
      assert_equal [4], queue.ask("double:it", 2, timeout: WAIT)
    end
  end

  # The callback server takes only the node's calls: no web page's (a Host not its own,
  # an Origin, a media type other than JSON's), and no ask without the node's token.
  def test_the_callback_server_refuses_what_is_not_the_node
    connection = BerryMQ.interconnect(url("http"), ttl: 60)
    callback = URI(connection.instance_variable_get(:@channel).callback_url)
    token = connection.instance_variable_get(:@own_token)
    ran = []
    BerryMQ.following_function("cb:web") { |m| ran << m.args.first; "ruby reply" }
    BerryMQ.following_function("cb:io") { |_m| $stdout }
    BerryMQ.following_function("cb:deep") { |m| nested(m.args.first) }
    ask = ->(params) { JSON.generate({ "jsonrpc" => "2.0", "method" => "ask", "params" => params, "id" => 1 }) }
    post = lambda do |body, headers|
      http = Net::HTTP.start(callback.host, callback.port)
      response = http.post("/", body, headers)
      [response.code, response.body]
    ensure
      http&.finish
    end
    with_token = ask.call({ "identifier" => "cb:web", "args" => [1], "token" => token })
    json = { "Content-Type" => "application/json" }
    assert_equal "415", post.call(with_token, { "Content-Type" => "text/plain" }).first
    assert_equal "415", post.call(with_token, { "Content-Type" => "" }).first
    assert_equal "403", post.call(with_token, json.merge("Origin" => "http://evil.example")).first
    assert_equal "421", post.call(with_token, json.merge("Host" => "evil.example")).first
    assert_equal "421", post.call(with_token, json.merge("Host" => "evil.example:#{callback.port}")).first
    code, body = post.call(ask.call({ "identifier" => "cb:web", "args" => [2] }), json)
    assert_equal ["200", -32_001], [code, JSON.parse(body)["error"]["code"]]
    code, body = post.call(ask.call({ "identifier" => "cb:web", "args" => [3], "token" => "x" * 43 }), json)
    assert_equal ["200", -32_001], [code, JSON.parse(body)["error"]["code"]]
    assert_empty ran
    %W[localhost:#{callback.port} 127.0.0.1:#{callback.port} LOCALHOST].each do |host|
      code, body = post.call(with_token, json.merge("Host" => host))
      assert_equal ["200", [{ "value" => "ruby reply" }]], [code, JSON.parse(body)["result"]], host
    end
    assert_equal [1, 1, 1], ran
    # a reply that is not JSON, or nested deeper than a node takes, is an error entry
    _, body = post.call(ask.call({ "identifier" => "cb:io", "token" => token }), json)
    entry = JSON.parse(body)["result"].first["error"]
    assert_equal ["TypeError", "the reply IO is not JSON"], [entry["type"], entry["message"]]
    _, body = post.call(ask.call({ "identifier" => "cb:deep", "args" => [125], "token" => token }), json)
    assert_equal "the reply is nested more than 124 levels deep, the limit", JSON.parse(body, max_nesting: 128)["result"].first["error"]["message"]
    _, body = post.call(ask.call({ "identifier" => "cb:deep", "args" => [124], "token" => token }), json)
    assert_equal nested(124), JSON.parse(body, max_nesting: 128)["result"].first["value"]
    # a text deeper than 128 levels: a Parse error naming the limit, as a node answers
    _, body = post.call("#{'[' * 129}#{']' * 129}", json)
    error = JSON.parse(body)["error"]
    assert_equal [-32_700, 128], [error["code"], error["data"]["limit"]]
  end

  # The calls a node makes to an interconnected client, made here by hand to the small
  # HTTP server that interconnect over HTTP starts: send_messages and send_message (with
  # extras, known or not), ask, batches, notifications, JSON-RPC 1.0, and refusals.
  def test_the_callback_server_answers_what_a_node_may_send
    node = url("http")
    connection = BerryMQ.interconnect(node, ttl: 60)
    callback = URI(connection.instance_variable_get(:@channel).callback_url)
    token = connection.instance_variable_get(:@own_token)
    got = BerryMQ::Queue.new("cb:*")
    BerryMQ.following_function("cb:question") { |m| m.args.first * 3 }
    http = Net::HTTP.start(callback.host, callback.port)
    post = lambda do |value|
      response = http.post("/", JSON.generate(value), "Content-Type" => "application/json")
      [response.code, response.body.to_s.empty? ? nil : JSON.parse(response.body)]
    end
    messages = [["cb:one", [1], {}], ["cb:two", [2], { "k" => "v" }, { "uid" => "u-1", "hops" => 1, "new" => 1 }]]
    assert_equal ["200", { "jsonrpc" => "2.0", "result" => "ok", "id" => 1 }],
                 post.call({ "jsonrpc" => "2.0", "method" => "send_messages",
                             "params" => { "token" => token, "messages" => messages }, "id" => 1 })
    assert_equal [["cb:one", [1], {}], ["cb:two", [2], { k: "v" }]], 2.times.map { m = got.get_nowait; [m.id, m.args, m.kwargs] }
    # the same uid again (a cycle) is delivered once; send_message with extras works too
    post.call({ "jsonrpc" => "2.0", "method" => "send_messages", "params" => { "token" => token, "messages" => [messages[1]] }, "id" => 2 })
    assert_equal ["200", { "jsonrpc" => "2.0", "result" => "ok", "id" => 3 }],
                 post.call({ "jsonrpc" => "2.0", "method" => "send_message",
                             "params" => { "token" => token, "identifier" => "cb:three", "args" => [3], "kwargs" => {},
                                           "uid" => "u-3", "hops" => 2, "someday" => true }, "id" => 3 })
    assert_equal "cb:three", got.get_nowait.id
    assert_raises(BerryMQ::Empty) { got.get_nowait }
    # positional params, a notification (204), a batch
    assert_equal ["204", nil], post.call({ "jsonrpc" => "2.0", "method" => "send_message", "params" => [token, "cb:four", [4], {}] })
    assert_equal [4], got.get_nowait.args
    code, batch = post.call([{ "jsonrpc" => "2.0", "method" => "ask", "params" => { "identifier" => "cb:question", "args" => [5], "token" => token }, "id" => 4 },
                             { "jsonrpc" => "2.0", "method" => "nope", "id" => 5 }])
    assert_equal "200", code
    assert_equal [{ "jsonrpc" => "2.0", "result" => [{ "value" => 15 }], "id" => 4 },
                  { "jsonrpc" => "2.0", "error" => { "code" => -32_601, "message" => "Method not found", "data" => "nope" }, "id" => 5 }], batch
    # an ask is answered once per uid, as a node answers it (an asker with several
    # connections here asks over each with the same uid); this process's own uids too
    asked = ->(id, uid) { post.call({ "jsonrpc" => "2.0", "method" => "ask", "id" => id,
                                      "params" => { "identifier" => "cb:question", "args" => [7], "token" => token, "uid" => uid } }) }
    assert_equal ["200", { "jsonrpc" => "2.0", "result" => [{ "value" => 21 }], "id" => 10 }], asked.call(10, "ask-uid-1")
    assert_equal ["200", { "jsonrpc" => "2.0", "result" => [], "id" => 11 }], asked.call(11, "ask-uid-1")
    assert_equal ["200", { "jsonrpc" => "2.0", "result" => [], "id" => 12 }], asked.call(12, BerryMQ.bus.new_uid)
    # JSON-RPC 1.0 (no "jsonrpc"): answered in 1.0 form
    assert_equal ["200", { "result" => [{ "value" => 6 }], "error" => nil, "id" => 6 }],
                 post.call({ "method" => "ask", "params" => ["cb:question", [2], {}, nil, token], "id" => 6 })
    # refusals name the problem
    _, wrong = post.call({ "jsonrpc" => "2.0", "method" => "send_messages", "params" => { "token" => "x" * 43, "messages" => [] }, "id" => 7 })
    assert_equal(-32_001, wrong["error"]["code"])
    _, local = post.call({ "jsonrpc" => "2.0", "method" => "send_messages", "params" => { "token" => token, "messages" => [["_x:y", [], {}]] }, "id" => 8 })
    assert_equal [-32_602, "messages[0]: _x:y is local; local messages never leave their process"], [local["error"]["code"], local["error"]["data"]]
    _, bad = post.call({ "jsonrpc" => "2.0", "method" => "send_messages", "params" => { "token" => token, "messages" => [["a:b", {}, {}]] }, "id" => 9 })
    assert_equal "messages[0]: args must be an array", bad["error"]["data"]
    response = http.post("/", "{not json", "Content-Type" => "application/json")
    assert_equal(-32_700, JSON.parse(response.body)["error"]["code"])
    assert_raises(BerryMQ::Empty) { got.get_nowait } # nothing refused was delivered
  ensure
    http&.finish
  end
end
