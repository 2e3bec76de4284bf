# frozen_string_literal: true

# What the library writes as JSON and how it takes answers it cannot read, against a
# scripted TCP server standing in for a node (a real node never writes such answers:
# test/test_remote.rb runs against one).
require_relative "test_helper"
require "socket"

class TestWire < Minitest::Test
  include FreshBus

  def nested(levels, inner = 1)
    levels.times.reduce(inner) { |value, _| [value] }
  end

  def test_only_json_is_sent
    dump = BerryMQ::JSONRPC.method(:dump)
    assert_equal '[null,true,false,1,2.5,"ü",{"a":[]},{"k":1}]', dump.call([nil, true, false, 1, 2.5, "ü", { "a" => [] }, { k: 1 }])
    [Object.new, $stdout, :symbol, Time.at(0), 1r, Float::NAN, Float::INFINITY, "\xff".b, "\xff",
     { 1 => 2 }, { nil => 1 }, { "a" => 1, a: 2 }, [[Object.new]], { "k" => [Struct.new(:x).new(1)] }].each do |bad|
      error = assert_raises(ArgumentError, bad.inspect) { dump.call(["x", bad]) }
      assert_includes error.message, "cannot be sent as JSON", bad.inspect
    end
    error = assert_raises(ArgumentError) { dump.call({ "args" => [1, { "when" => Time.at(0) }] }) }
    assert_includes error.message, '["args"][1]["when"] is a Time'
    cycle = []
    cycle << cycle
    assert_includes assert_raises(ArgumentError) { dump.call(cycle) }.message, "more than 128 levels deep"
    assert_equal "#{'[' * 128}#{']' * 128}", dump.call(nested(127, []))
    assert_raises(ArgumentError) { dump.call(nested(128, [])) }
    # a message's own form [identifier, args, kwargs] nests at most 124 levels
    assert_nil BerryMQ::JSONRPC.check_message("a:b", nested(123), {})
    error = assert_raises(ArgumentError) { BerryMQ::JSONRPC.check_message("a:b", nested(124), {}) }
    assert_includes error.message, "more than 124 levels deep"
  end

  # A server of one connection, on a thread of its own: +handle+ gets the accepted
  # socket. Returns the +scheme+ URL that reaches it.
  def serve_one(scheme, &handle)
    @server = TCPServer.new("127.0.0.1", 0)
    @threads = [Thread.new do
      client = @server.accept
      handle.call(client)
    rescue IOError, SystemCallError
      nil
    ensure
      client&.close
    end]
    "#{scheme}://127.0.0.1:#{@server.addr[1]}"
  end

  # A server that reads lines and answers each with what +script+ returns for the parsed
  # request (nil: no answer).
  def fake_node(&script)
    serve_one("tcp") do |client|
      while (line = client.gets)
        answer = script.call(JSON.parse(line))
        client.write("#{answer}\n") if answer
      end
    end
  end

  def teardown
    @server&.close
    @threads&.each { |t| t.kill.join(2) }
    super
  end

  def token_reply(id)
    %({"jsonrpc":"2.0","result":"#{'t' * 43}","id":#{id}})
  end

  def test_an_answer_that_cannot_be_read_fails_its_call_at_once
    deep = "#{'[' * 130}#{']' * 130}"
    url = fake_node do |request|
      case request["method"]
      when "connect_via_queue" then token_reply(request["id"])
      when "get" then %({"jsonrpc":"2.0","result":["deep:x",#{deep},{}],"id":#{request['id']}})
      when "get_nowait" then %({"jsonrpc":"2.0","result":{not json},"id":null})
      end
    end
    queue = BerryMQ.connect_via_queue(url, "deep:*", timeout: 5)
    started = BerryMQ.monotonic
    error = assert_raises(BerryMQ::TransportError) { queue.get(timeout: 20) }
    assert_operator BerryMQ.monotonic - started, :<, 4, "the unreadable answer was taken for no answer"
    assert_includes error.message, "more than 128 levels deep"
    assert_includes error.message, "it answered this call"
    # an answer whose call cannot be told: the calls waiting fail, saying why
    error = assert_raises(BerryMQ::TransportError) { queue.get_nowait }
    assert_includes error.message, "is not JSON"
  end

  # An HTTP server that reads a request, then answers one byte every half second, forever:
  # each read gets something in time, the answer never ends.
  def trickling_http_server
    serve_one("http") do |client|
      client.gets("\r\n\r\n")
      client.write("HTTP/1.1 200 OK\r\nX-Slow: ")
      loop do
        client.write("a")
        sleep 0.5 # the workload: a node this slow
      end
    end
  end

  def test_an_http_answer_that_never_ends_fails_its_call_in_time
    url = trickling_http_server
    started = BerryMQ.monotonic
    call = Thread.new do
      BerryMQ.connect_oneway(url, timeout: 1)
    rescue StandardError => e
      e
    end
    flunk "connect_oneway still waits after 30 s of an answer that never ends" unless call.join(30)
    assert_instance_of BerryMQ::TransportError, call.value
    # the timeout alone: connect_oneway does not wait at the node (a blocking get or an
    # ask gets 5 s more: test_answers.rb)
    assert_includes call.value.message, "did not answer within 1 s"
    assert_operator BerryMQ.monotonic - started, :<, 20
  ensure
    call&.kill&.join(2)
  end

  def test_times_in_messages_are_rounded
    url = fake_node { |request| token_reply(request["id"]) if request["method"] == "connect_via_queue" }
    queue = BerryMQ.connect_via_queue(url, "x:*", timeout: 0.2)
    error = assert_raises(BerryMQ::TransportError) { queue.get(timeout: 0.2) }
    assert_match(/did not answer get within \d+(\.\d{1,3})? s\z/, error.message)
    %i[nan inf neg].zip([Float::NAN, Float::INFINITY, -1]).each do |name, bad|
      error = assert_raises(ArgumentError, name.to_s) { queue.get(timeout: bad) }
      assert_includes error.message, "timeout"
      error = assert_raises(ArgumentError, name.to_s) { queue.ask("x:y", timeout: bad) }
      assert_includes error.message, "timeout"
    end
  end
end
