# frozen_string_literal: true

# What the library does when a node refuses part of what it sent, goes quiet, stops
# reading, answers too much or answers garbage, against scripted servers standing in for a
# node on 127.0.0.1 (tests/test_ruby_client.py runs the suites against real nodes).
require_relative "test_helper"
require "socket"

class TestRobustness < Minitest::Test
  include FreshBus
  include Waiting

  TOKEN = "t" * 43

  # A scripted node over TCP: each request line is recorded and answered with what the
  # block returns for it (a Hash is the result, an "error" Hash the error; a String is
  # written as it is; nil answers nothing). Lines shaped like responses are the client's
  # answers to requests the test sent with #request.
  class FakeNode
    attr_reader :url

    def initialize(&script)
      @script = script
      @server = TCPServer.new("127.0.0.1", 0)
      @url = "tcp://127.0.0.1:#{@server.addr[1]}"
      @lock = Mutex.new
      @seen = []
      @answers = Thread::Queue.new
      @clients = []
      @threads = [Thread.new { accept }]
    end

    def accept
      loop do
        client = @server.accept
        @lock.synchronize { @clients << client }
        @threads << Thread.new(client) { |c| serve(c) }
      end
    rescue IOError, SystemCallError
      nil
    end

    def serve(client)
      while (line = client.gets)
        request = JSON.parse(line)
        next @answers << request unless request.is_a?(Hash) && request.key?("method")

        @lock.synchronize { @seen << request }
        answer = @script.call(request, client)
        client.write(answer.is_a?(String) ? "#{answer}\n" : "#{JSON.generate(reply(answer, request))}\n") if answer
      end
    rescue IOError, SystemCallError
      nil
    ensure
      @lock.synchronize { @ended = true }
    end

    def reply(answer, request)
      return { "jsonrpc" => "2.0", "error" => answer["error"], "id" => request["id"] } if answer.key?("error")

      { "jsonrpc" => "2.0", "result" => answer["result"], "id" => request["id"] }
    end

    # Whether a client connection ended (the client closed it).
    def ended?
      @lock.synchronize { @ended }
    end

    # The requests of +method+ seen so far.
    def seen(method)
      @lock.synchronize { @seen.select { |r| r["method"] == method } }
    end

    # Sends a request to the client on its connection; its answer.
    def request(method, params, id)
      client = @lock.synchronize { @clients.last }
      client.write("#{JSON.generate({ 'jsonrpc' => '2.0', 'method' => method, 'params' => params, 'id' => id })}\n")
      Timeout.timeout(Waiting::WAIT_SECONDS) { @answers.pop }
    end

    def close
      @server.close
      @lock.synchronize { @clients.each { |c| c.close unless c.closed? } }
      @threads.each { |t| t.kill.join(2) }
    end
  end

  def fake_node(&script)
    @fakes ||= []
    (@fakes << FakeNode.new(&script)).last
  end

  # A node that opens sessions and answers "ok" to the rest, unless the block answers.
  def obliging_node(&script)
    fake_node do |request, client|
      answer = script&.call(request, client)
      next answer if answer

      case request["method"]
      when "connect_oneway", "connect_via_queue", "interconnect" then { "result" => TOKEN }
      when "get", "get_nowait" then { "error" => { "code" => -32_002, "message" => "Queue is empty" } }
      else { "result" => "ok" }
      end
    end
  end

  # A raw server of one connection on a thread of its own: +handle+ gets the socket.
  def serve_one(&handle)
    server = TCPServer.new("127.0.0.1", 0)
    (@raw ||= []) << server
    (@raw_threads ||= []) << Thread.new do
      client = server.accept
      handle.call(client)
    rescue IOError, SystemCallError
      nil
    ensure
      client&.close
    end
    server.addr[1]
  end

  # What the library logs goes to @log (errors here are the point, not noise).
  def setup
    super
    @log = log = []
    logger = Object.new
    logger.define_singleton_method(:error) { |text| log << text }
    logger.define_singleton_method(:warn) { |text| log << text }
    BerryMQ.logger = logger
  end

  def teardown
    BerryMQ.reset
    @fakes&.each(&:close)
    @raw&.each(&:close)
    @raw_threads&.each { |t| t.kill.join(2) }
    super
  end

  # Runs the block in a thread; fails the test when it has not ended within +seconds+.
  def within(seconds, what)
    started = BerryMQ.monotonic
    thread = Thread.new do
      yield
    rescue StandardError => e
      e
    end
    flunk "#{what}: still running after #{seconds} s" unless thread.join(seconds)
    [thread.value, BerryMQ.monotonic - started]
  ensure
    thread&.kill&.join(2)
  end

  # -- 1. identifiers ---------------------------------------------------------------------

  def test_identifiers_agree_with_python_and_are_at_most_256_characters
    # Unicode 14 characters, unassigned in Ruby 3.1's tables, are valid for Python 3.11
    assert_equal "\u{1FAE0}:x", BerryMQ::Identifier.new("\u{1FAE0}:x").to_s
    assert_equal "x:\u{1FAE7}", BerryMQ::Identifier.new("x:\u{1FAE7}").to_s
    # what is unassigned for Python 3.11 (Unicode 15's U+1FAE8, U+0378) is refused there:
    # refused at the call here too (sent, it refused the whole batch it was in)
    error = assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ::Identifier.new("x:\u{1FAE8}") }
    assert_includes error.message, "unassigned in Unicode 14"
    assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ::Identifier.new("a\u0378:x") }
    # a format character assigned in Unicode 14 is not printable for Python: refused
    error = assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ::Identifier.new("a\u0890:b") }
    assert_includes error.message, "format"
    error = assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ::Identifier.new("a\u{E000}:b") }
    assert_includes error.message, "private-use character: U+E000"
    error = assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ::Identifier.new("a b") }
    assert_includes error.message, "whitespace: U+0020"
    # the canonical text is at most 256 characters ("name" counts as "name:*")
    assert_equal 256, BerryMQ::Identifier.new("#{'a' * 254}:x").to_s.length
    error = assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ::Identifier.new("#{'a' * 255}:x") }
    assert_includes error.message, "it is 257 characters long, over the limit of 256"
    error = assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ::Identifier.new("a" * 255) }
    assert_includes error.message, "257 with the ':*' that a missing action counts as"
    assert_raises(BerryMQ::InvalidIdentifier) { BerryMQ.twitter("#{'a' * 300}:x") }
  end

  def test_messages_from_the_node_are_delivered_whatever_ruby_thinks_of_their_identifier
    long = "#{'a' * 300}:x" # over Ruby's limit: a node of another make may allow it
    node = obliging_node do |request, _|
      { "result" => [long, [1], {}] } if request["method"] == "get_nowait"
    end
    queue = BerryMQ.connect_via_queue(node.url, "*:x", timeout: 5)
    message = queue.get_nowait # taken from the node's queue: never lost
    assert_equal ["a" * 300, "x", [1]], [message.name, message.action, message.args]
    got = []
    BerryMQ.following_function("*:*") { |m| got << [m.id, m.args] }
    BerryMQ.interconnect(node.url, timeout: 5)
    answer = node.request("send_messages", { "token" => node.seen("interconnect").last["params"]["token"],
                                             "messages" => [["before:x", [1], {}], [long, [2], {}],
                                                            ["\u{1FAE0}:x", [3], {}], ["after:x", [4], {}]] }, 1)
    assert_equal "ok", answer["result"], answer.inspect
    assert_equal [["before:x", [1]], [long, [2]], ["\u{1FAE0}:x", [3]], ["after:x", [4]]], got
  end

  # -- 2. refusals and lost links ---------------------------------------------------------

  # A node that refuses (Queue is full) the messages whose first argument is "refuse".
  def refusing_node
    obliging_node do |request, _|
      next unless request["method"] == "send_messages"

      messages = request["params"]["messages"]
      refused = messages.each_index.select { |i| messages[i][1].first == "refuse" }
      next if refused.empty?

      { "error" => { "code" => -32_005, "message" => "Queue is full",
                     "data" => { "refused" => refused, "setting" => "queue_size", "limit" => 2 } } }
    end
  end

  def sent_args(node)
    node.seen("send_messages").flat_map { |r| r["params"]["messages"] }.map { |m| m[1].first }
  end

  def test_a_partial_refusal_loses_only_the_refused_messages
    node = refusing_node
    link = BerryMQ.interconnect(node.url, timeout: 5)
    BerryMQ.twitter("job:x", "one")
    BerryMQ.twitter("job:x", "refuse")
    BerryMQ.twitter("job:x", "two")
    refute BerryMQ.flush(WAIT_SECONDS), "a refused message was reported delivered"
    assert(@log.any? { |line| line.include?("the node refused 1 of") }, @log.inspect)
    assert_equal({ "refused: queue full" => 1 }, link.losses)
    assert_equal 1, link.lost
    assert_equal({ "refused: queue full" => 1 }, BerryMQ.losses)
    refute link.closed?
    assert_equal [link], BerryMQ.connections
    # the messages behind keep flowing on the same connection
    BerryMQ.twitter("job:x", "three")
    assert BerryMQ.flush(WAIT_SECONDS)
    assert_equal %w[one refuse two three], sent_args(node)
    BerryMQ.twitter("job:x", "refuse")
    error = assert_raises(BerryMQ::QueueFull) { link.flush(WAIT_SECONDS) }
    assert_includes error.message, "1 refused: queue full"
  end

  def test_a_lost_link_is_closed_and_later_twitters_are_reported
    node = obliging_node do |request, _|
      if request["method"] == "send_messages" && request["params"]["messages"].any?
        { "error" => { "code" => -32_001, "message" => "Unknown or expired token" } }
      end
    end
    link = BerryMQ.interconnect(node.url, timeout: 5)
    BerryMQ.twitter("job:x", 1)
    refute BerryMQ.flush(WAIT_SECONDS), "a message lost with its link was reported delivered"
    eventually("the link closed") { link.closed? }
    assert_raises(BerryMQ::ConnectionClosed) { link.flush(1) }
    eventually("the node's session closed, best effort") { node.seen("close_connection").any? }
    eventually("the connection closed, nothing more received on it") { node.ended? }
    BerryMQ.twitter("job:x", 2) # not forwarded: reported, not silent
    refute BerryMQ.flush(WAIT_SECONDS)
    assert_operator BerryMQ.losses["not sent: connection failed or closed"], :>=, 2
    BerryMQ.close_connection(node.url) # the user gives the link up: twitter is quiet again
    BerryMQ.twitter("job:x", 3)
    assert BerryMQ.flush(WAIT_SECONDS)
  end

  # -- 3. renewal -------------------------------------------------------------------------

  def test_an_interconnection_is_renewed_and_a_failed_renewal_closes_it
    refuse = false
    node = obliging_node do |request, _|
      renewal = request["method"] == "send_messages" && request["params"]["messages"].empty?
      { "error" => { "code" => -32_001, "message" => "Unknown or expired token" } } if renewal && refuse
    end
    link = BerryMQ.interconnect(node.url, ttl: 0.3, timeout: 5)
    eventually("two renewals (every ttl/3)") { node.seen("send_messages").size >= 2 }
    assert(node.seen("send_messages").all? { |r| r["params"] == { "token" => TOKEN, "messages" => [] } })
    refute link.closed?
    refuse = true # the node forgot the session
    eventually("the link closed after a failed renewal") { link.closed? }
    assert_empty BerryMQ.connections
  end

  # -- 4. writes with a deadline ----------------------------------------------------------

  def test_a_node_that_stops_reading_fails_calls_within_their_timeout
    stop = BerryMQ::Waiter.new
    port = serve_one do |client|
      request = JSON.parse(client.gets)
      client.write("#{JSON.generate({ 'jsonrpc' => '2.0', 'result' => TOKEN, 'id' => request['id'] })}\n")
      stop.wait(60) # reads nothing more
    end
    connection = BerryMQ.connect_oneway("tcp://127.0.0.1:#{port}", timeout: 1)
    big = "a" * 900_000
    errors, = within(40, "calls to a node that stopped reading") do
      Array.new(20) do
        started = BerryMQ.monotonic
        connection.send_message("job:big", big)
        nil
      rescue BerryMQ::TransportError => e
        [e, BerryMQ.monotonic - started]
      end
    end
    errors.each { |e, took| assert_operator took, :<, 3, e.message }
    messages = errors.map { |e, _| e.message }
    assert(messages.any? { |m| m.include?("within the call's timeout") }, messages.uniq.inspect)
    _, took = within(20, "close") { connection.close }
    assert_operator took, :<, 10
  ensure
    stop&.set
  end

  # -- 5. bounds on what is read, and max_size sent -----------------------------------------

  def test_max_size_is_sent_and_bounds_what_is_read_of_a_line
    long = "x" * (5 * 1_048_576) # over 4 x 1 MiB: max_size 4096 counts as 1 MiB here
    node = obliging_node do |request, _|
      %({"jsonrpc":"2.0","result":["a:b",["#{long}"],{}],"id":#{request['id']}}) if request["method"] == "get_nowait"
    end
    queue = BerryMQ.connect_via_queue(node.url, "a:*", timeout: 5, max_size: 4096)
    assert_equal 4096, node.seen("connect_via_queue").last["params"]["max_size"]
    error = assert_raises(BerryMQ::TransportError) { queue.get_nowait }
    assert_includes error.message, "the limit of what this client reads of one reply (4 x max(max_size, 1 MiB) = 4 x 1048576)"
    BerryMQ.interconnect(node.url, timeout: 5, max_size: 8192)
    assert_equal 8192, node.seen("interconnect").last["params"]["max_size"]
  end

  def test_an_endless_http_answer_is_cut_at_four_times_max_size
    port = serve_one do |client|
      2.times do
        head = client.gets("\r\n\r\n")
        body = client.read(head[/content-length: (\d+)/i, 1].to_i)
        if JSON.parse(body)["method"] == "connect_oneway"
          text = JSON.generate({ "jsonrpc" => "2.0", "result" => TOKEN, "id" => JSON.parse(body)["id"] })
          client.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" \
                       "Content-Length: #{text.bytesize}\r\n\r\n#{text}")
          next
        end
        client.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = "a" * 65_536
        1024.times { client.write("#{chunk.bytesize.to_s(16)}\r\n#{chunk}\r\n") } # 64 MiB, then it gives up
      end
    end
    connection = BerryMQ.connect_oneway("http://127.0.0.1:#{port}", timeout: 5, max_size: 4096)
    error, = within(30, "a call answered without end") { connection.send_message("job:x", 1) }
    assert_instance_of BerryMQ::TransportError, error
    assert_includes error.message, "answered more than 4194304 bytes"
  end

  # An HTTP channel to nowhere, for its callback server alone: the channel and the
  # server's URI.
  def callback_server(**options)
    channel = BerryMQ::HttpChannel.new("http://127.0.0.1:1", "127.0.0.1", 1, handler: ->(_r) {}, timeout: 5,
                                                                           **options)
    [channel, URI(channel.callback_url)]
  end

  def test_the_callback_server_takes_bodies_up_to_max_size
    channel, uri = callback_server(max_size: 2048)
    post = lambda do |size|
      Net::HTTP.start(uri.host, uri.port) do |http|
        http.post("/", %({"jsonrpc":"2.0","method":"x","params":["#{'a' * (size - 45)}"]}),
                  "Content-Type" => "application/json").code
      end
    end
    assert_equal "204", post.call(2000)
    assert_equal "413", post.call(3000)
  ensure
    channel&.close
  end

  def test_the_callback_server_refuses_headers_over_its_limit
    channel, uri = callback_server
    head = lambda do |size|
      socket = TCPSocket.new(uri.host, uri.port)
      socket.write("POST / HTTP/1.1\r\nContent-Type: application/json\r\n")
      (size / 1000).times { |i| socket.write("X-Filler-#{i}: #{'a' * 980}\r\n") }
      socket.write("Content-Length: 2\r\n\r\n{}")
      socket.gets
    ensure
      socket&.close
    end
    assert_match(/\AHTTP\/1.1 2\d\d /, head.call(8_000))
    assert_match(/\AHTTP\/1.1 431 /, head.call(20_000))
  ensure
    channel&.close
  end

  # Whether every connection to the callback server of +channel+ is in the middle of a
  # request (none waits for its next one).
  # Whether the server took +count+ connections and none waits for its next request
  # (@idle is empty too while connections are not taken yet: under load they come later).
  def all_busy?(channel, count)
    server = channel.instance_variable_get(:@server)
    server.instance_variable_get(:@lock).synchronize do
      server.instance_variable_get(:@clients).size == count && server.instance_variable_get(:@idle).empty?
    end
  end

  def test_the_callback_server_refuses_a_connection_over_its_limit_when_all_are_busy
    channel, uri = callback_server
    limit = BerryMQ::CallbackServer::MAX_CLIENTS
    held = Array.new(limit) { TCPSocket.new(uri.host, uri.port) }
    held.each { |socket| socket.write("POST / HTTP/1.1\r\n") } # each in the middle of one
    eventually("every connection taken, in the middle of a request") { all_busy?(channel, limit) }
    one_more = TCPSocket.new(uri.host, uri.port)
    refusal, = within(10, "the refusal") { [one_more.gets, one_more.read] }
    assert_match(/\AHTTP\/1.1 503 /, refusal[0])
    assert_includes refusal[1], "over #{limit} connections open at once"
    held.pop.close
    eventually("a place freed") do
      socket = TCPSocket.new(uri.host, uri.port)
      socket.write("POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
      socket.gets.to_s.match?(/\AHTTP\/1.1 2\d\d /)
    ensure
      socket&.close
    end
  ensure
    held&.each(&:close)
    one_more&.close
    channel&.close
  end

  def test_a_connection_over_the_limit_takes_the_place_of_the_one_idle_longest
    channel, uri = callback_server
    limit = BerryMQ::CallbackServer::MAX_CLIENTS
    idle = Array.new(limit) { TCPSocket.new(uri.host, uri.port) } # they never send a thing
    eventually("every connection taken") do
      server = channel.instance_variable_get(:@server)
      server.instance_variable_get(:@lock).synchronize { server.instance_variable_get(:@idle).size == limit }
    end
    one_more = TCPSocket.new(uri.host, uri.port)
    one_more.write("POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    answer, = within(10, "the answer") { one_more.gets }
    assert_match(/\AHTTP\/1.1 2\d\d /, answer)
    closed = []
    eventually("one idle connection closed by the server") do
      closed |= idle.select { |s| s.wait_readable(0) && s.read_nonblock(1, exception: false).nil? }
      !closed.empty?
    end
    assert_equal 1, closed.size
  ensure
    idle&.each(&:close)
    one_more&.close
    channel&.close
  end

  # -- 6. garbage -------------------------------------------------------------------------

  def test_a_line_that_is_not_utf8_fails_its_call_and_the_reader_goes_on
    calls = 0
    node = obliging_node do |request, _|
      next unless request["method"] == "get_nowait"

      calls += 1
      %({"jsonrpc":"2.0","result":"\xFF\xFE","id":#{request['id']}}).b if calls == 1
    end
    queue = BerryMQ.connect_via_queue(node.url, "a:*", timeout: 5)
    error, took = within(20, "a call answered with a line that is not UTF-8") { queue.get_nowait }
    assert_kind_of BerryMQ::TransportError, error
    assert_includes error.message, "not UTF-8"
    assert_operator took, :<, 4, "the unreadable answer was taken for no answer"
    assert_raises(BerryMQ::Empty) { queue.get_nowait } # the reader still reads
  end

  def test_an_http_answer_that_is_not_utf8_fails_its_call
    port = serve_one do |client|
      2.times do
        head = client.gets("\r\n\r\n")
        request = JSON.parse(client.read(head[/content-length: (\d+)/i, 1].to_i))
        text = if request["method"] == "connect_oneway"
                 JSON.generate({ "jsonrpc" => "2.0", "result" => TOKEN, "id" => request["id"] })
               else
                 %({"jsonrpc":"2.0","result":[{"value":"\xFF\xFE"}],"id":#{request['id']}}).b
               end
        client.write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" \
                     "Content-Length: #{text.bytesize}\r\n\r\n".b + text)
      end
    end
    connection = BerryMQ.connect_oneway("http://127.0.0.1:#{port}", timeout: 5)
    error = assert_raises(BerryMQ::TransportError) { connection.ask("a:b") }
    assert_includes error.message, "not UTF-8"
  end

  def test_a_link_that_fails_while_it_closes_is_given_up_with_it
    node = fake_node { |request, _| { "result" => TOKEN } if request["method"] == "interconnect" }
    connection = BerryMQ.interconnect(node.url, timeout: 1) # nothing else is answered
    BerryMQ.twitter("job:x", 1)
    within(20, "close") { connection.close }
    assert_empty BerryMQ.bus.lost_links
    BerryMQ.flush(1) # the message the close could not send: reported once
    BerryMQ.twitter("local:only", 2)
    assert BerryMQ.flush(1), "a link closed by the program still counted later twitters as lost"
  end

  def test_http_to_a_port_that_is_not_http_names_the_problem
    port = serve_one do |client|
      client.gets
      client.write(%({"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request","data":"this port speaks ) +
                   %(JSON-RPC over TCP, not HTTP"},"id":null}\n))
    end
    error = assert_raises(BerryMQ::TransportError) { BerryMQ.connect_oneway("http://127.0.0.1:#{port}", timeout: 5) }
    assert_includes error.message, "did not answer in HTTP"
    assert_includes error.message, "this port speaks JSON-RPC over TCP, not HTTP"
  end

  # A connect that failed reports nothing more: the end of its channel, which follows (the
  # node hung up on a request it did not answer), is no loss of a connection that never
  # was. (It was logged as one, "the connection ... is lost", after the error was raised.)
  def test_a_connect_that_failed_logs_no_lost_connection
    port = serve_one do |client|
      client.gets # the connect_oneway, never answered: the node hangs up
    end
    error = assert_raises(BerryMQ::ConnectionClosed) { BerryMQ.connect_oneway("tcp://127.0.0.1:#{port}", timeout: 5) }
    assert_includes error.message, "closed the connection"
    assert_empty BerryMQ.connections
    assert_empty @log # the channel's reader has ended: the connect's clean-up joined it
  end

  # A node's Unauthorised names the node and whether the secret was missing or wrong (it
  # said "Unauthorised (-32004)" alone).
  def test_unauthorised_says_whether_the_secret_was_missing_or_wrong
    node = fake_node { |_request, _| { "error" => { "code" => -32_004, "message" => "Unauthorised" } } }
    { nil => "no secret was given; pass secret: or set BERRYMQ_SECRET to the node's shared secret",
      "wrong" => "the secret given was refused (a wrong secret: not the node's shared secret)" }.each do |secret, why|
      error = assert_raises(BerryMQ::RemoteError) { BerryMQ.connect_oneway(node.url, timeout: 5, secret: secret) }
      assert_equal(-32_004, error.code)
      assert_equal "#{node.url} refused the request: Unauthorised (-32004): #{why}", error.message
    end
    assert_empty BerryMQ.connections
  end

  # -- 8. tokens --------------------------------------------------------------------------

  def test_an_answer_that_is_not_a_token_is_refused
    [{ "not" => "a token" }, "", "a b", "t" * 257, "caf\u00e9", nil].each do |bad|
      node = fake_node { |_request, _| { "result" => bad } }
      error = assert_raises(BerryMQ::TransportError, bad.inspect) { BerryMQ.connect_oneway(node.url, timeout: 5) }
      assert_includes error.message, "#{node.url} answered connect_oneway with a malformed token"
      assert_empty BerryMQ.connections
    end
  end
end
